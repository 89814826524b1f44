"""Execute a validated spec inside one Prefect flow run.

Each node is one task run named by its id (``<id>[<i>]`` for map elements); nodes whose
upstreams are done start at once, so independent branches run concurrently. Results are
persisted with a cache key of run + node (+ element), so a retried run does not execute the
nodes that already completed (durable resume); a handled failure is persisted the same way, so a
resumed run neither repeats the failed call nor its failure branch's trigger. A node that fails
after its retries fails the run unless an ``on: failed``/``on: always`` edge leaves it; then it
is recorded (see :mod:`flows.spec.outcomes`) and its edges are followed. Lifecycle events go to
Prefect's event feed.
"""

from __future__ import annotations

import copy
import queue
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from prefect import Task, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Completed
from pydantic import BaseModel, ValidationError

from agency.errors import SpecRuntimeError
from flows.spec import outcomes
from flows.spec.credentials import bind_credential
from flows.spec.model import SpecEdge, SpecNode, WorkflowSpec
from flows.spec.outcomes import COMPLETED, FAILED, SKIPPED
from flows.spec.templates import evaluate, render
from flows.spec.validate import normalise_params, topological_order
from nodes.catalog import get_node


def _cache_key(node_key: str) -> CacheKeyFnPolicy:
    def key(context: TaskRunContext, _: dict[str, Any]) -> str:
        return f"spec-{context.task_run.flow_run_id}-{node_key}"

    return CacheKeyFnPolicy(cache_key_fn=key)


@lru_cache(maxsize=256)
def _node_task(base: Task[..., Any], retries: int | None, delay: float | None) -> Task[..., Any]:
    """A node's task as the runner starts it: results persisted (durable resume) and no Prefect
    task timeout (nodes bound their own I/O; a thread-pool task's timeout cannot interrupt it
    and only logs a warning per run)."""
    options: dict[str, Any] = {}
    if retries is not None:
        options["retries"] = retries
    if delay is not None:
        options["retry_delay_seconds"] = delay
    return base.with_options(
        cache_policy=_cache_key(""), persist_result=True, timeout_seconds=None, **options
    )


def _named(base: Task[..., Any], key: str) -> Task[..., Any]:
    """``base`` as task run ``key`` with the cache key of run + ``key``.

    A shallow copy with two attributes set: ``with_options`` would rebuild the task and read
    its source again (``inspect.getsource``), which was most of the runner's overhead per node.
    """
    named = copy.copy(base)
    named.task_run_name = key
    named.cache_policy = _cache_key(key)
    return named


@task
def skipped(reason: str) -> Any:
    """Marks a node that did not run (its task run ends in state ``Skipped``)."""
    return Completed(name="Skipped", message=reason)


def _skipped_as(node_id: str) -> Task[..., Any]:
    named = copy.copy(skipped)
    named.task_run_name = node_id
    return named


@task
def handled_failure(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Holds a handled failure under the node's resume key (``None``: nothing recorded)."""
    return error


@dataclass
class _Mapping:
    items: list[Any]
    results: list[dict[str, Any] | None] = field(default_factory=list)
    next_index: int = 0
    in_flight: int = 0
    done: int = 0


class SpecRun:
    """The scheduler of one spec run (call :meth:`execute` inside a flow)."""

    def __init__(
        self, spec: WorkflowSpec, client: str, inputs: dict[str, Any], scope: str = ""
    ) -> None:
        self.spec, self.client, self.inputs = spec, client, inputs
        # prefixes the nodes' cache keys: each event of a batch run is its own spec run
        self.scope = scope
        self.order, _ = topological_order(spec)
        self.by_id: dict[str, SpecNode] = {n.id: n for n in spec.nodes}
        self.incoming: dict[str, list[SpecEdge]] = {n.id: [] for n in spec.nodes}
        for edge in spec.edges:
            self.incoming[edge.to].append(edge)
        self.handled = {n.id for n in spec.nodes if spec.failure_handled(n.id)}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pending: dict[PrefectFuture[Any], tuple[str, int | None]] = {}
        self.done: queue.SimpleQueue[PrefectFuture[Any]] = queue.SimpleQueue()
        self.maps: dict[str, _Mapping] = {}
        self.started: set[str] = set()
        self.run_id = str(flow_run.id or "local")
        self.resuming = (flow_run.run_count or 1) > 1
        self.resource = {
            "prefect.resource.id": f"agency.run.{client}.{spec.name}.{self.run_id}",
            "prefect.resource.name": f"{spec.name}/{client}",
            "agency.client": client,
            "agency.workflow": spec.name,
            "agency.flow-run-id": self.run_id,
        }
        self.related = [
            {
                "prefect.resource.id": f"prefect.flow-run.{self.run_id}",
                "prefect.resource.role": "flow-run",
            }
        ]

    # -- events ---------------------------------------------------------------------------------

    def emit(self, event: str, node: str | None = None, **payload: Any) -> None:
        resource = {**self.resource, "agency.node": node} if node else self.resource
        emit_event(event=event, resource=resource, related=self.related, payload=payload)

    # -- helpers --------------------------------------------------------------------------------

    def context(self, item: Any = None, mapped: bool = False) -> dict[str, Any]:
        ctx: dict[str, Any] = {"inputs": self.inputs, "nodes": self.nodes, "client": self.client}
        if mapped:
            ctx["item"] = item
        return ctx

    def build_input(self, node_id: str, ctx: dict[str, Any]) -> BaseModel:
        spec_node = self.by_id[node_id]
        entry = get_node(spec_node.node)
        model = entry.input_model
        params = bind_credential(self.spec, entry, normalise_params(spec_node.params, model))
        rendered: dict[str, Any] = {"client": self.client}
        for name, value in params.items():
            try:
                rendered[name] = render(value, ctx)
            except Exception as exc:  # jinja2 errors: undefined data, bad filters
                raise SpecRuntimeError(f"Node '{node_id}': param '{name}': {exc}") from None
        try:
            return model.model_validate(rendered)
        except ValidationError as exc:
            err = exc.errors(include_input=False, include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise SpecRuntimeError(f"Node '{node_id}': param '{loc}': {err['msg']}") from None

    def runnable(self, spec_node: SpecNode, key: str) -> Task[..., Any]:
        base = get_node(spec_node.node).task
        task = _node_task(base, spec_node.retries, spec_node.retry_delay_seconds)
        return _named(task, f"{self.scope}{key}")

    def failure_record(self, key: str, error: dict[str, Any] | None) -> dict[str, Any] | None:
        """Read (``error=None``) or write the handled failure kept for a resumed run."""
        key = f"{self.scope}{key}"
        return handled_failure.with_options(
            task_run_name=f"{key}.failure",
            cache_policy=_cache_key(f"{key}.failure"),
            persist_result=True,
            refresh_cache=error is not None,
        )(error)

    def submit(
        self, node_id: str, index: int | None, ctx: dict[str, Any], inline: bool = False
    ) -> None:
        """Start one task run; ``inline`` runs it in this thread (nothing else can run now)."""
        key = node_id if index is None else f"{node_id}[{index}]"
        if self.resuming and node_id in self.handled:
            prior = self.failure_record(key, None)
            if prior is not None:
                self.emit("node.failed", node_id, **prior, handled=True, index=index, resumed=True)
                self.record(node_id, index, outcomes.failed(prior))
                return
        params = self.build_input(node_id, ctx)
        runnable = self.runnable(self.by_id[node_id], key)
        if inline:
            try:
                result = runnable(params)
            except Exception as exc:
                self.fail(node_id, index, exc)
                return
            self.record(node_id, index, outcomes.completed(outcomes.as_output(result)))
            return
        future = runnable.submit(params)
        self.pending[future] = (node_id, index)
        future.add_done_callback(self.done.put)

    def fail(self, node_id: str, index: int | None, exc: Exception) -> None:
        """Record a handled failure, or re-raise ``exc`` to fail the run."""
        error = outcomes.error_info(exc)
        handled = node_id in self.handled
        self.emit("node.failed", node_id, **error, handled=handled, index=index)
        if not handled:
            raise exc
        key = node_id if index is None else f"{node_id}[{index}]"
        self.failure_record(key, error)
        self.record(node_id, index, outcomes.failed(error))

    def edge_active(self, edge: SpecEdge) -> bool:
        if not outcomes.took(self.nodes[edge.source], edge.on):
            return False
        if not edge.when:
            return True
        try:
            return bool(evaluate(edge.when, self.context()))
        except Exception as exc:
            raise SpecRuntimeError(
                f"Edge {edge.source} -> {edge.to}: condition '{edge.when}': {exc}"
            ) from None

    def start_ready(self) -> bool:
        progressed = False
        for node_id in self.order:
            if node_id in self.started:
                continue
            edges = self.incoming[node_id]
            if any(e.source not in self.nodes for e in edges):
                continue
            self.started.add(node_id)
            progressed = True
            if edges and not any(self.edge_active(e) for e in edges):
                reason = "no incoming edge was taken"
                _skipped_as(node_id)(reason)
                self.nodes[node_id] = outcomes.skipped()
                self.emit("node.skipped", node_id, reason=reason)
                continue
            spec_node = self.by_id[node_id]
            if spec_node.map is None:
                self.submit(node_id, None, self.context(), inline=self.runs_alone(node_id))
                continue
            try:
                items = render(spec_node.map, self.context())
            except Exception as exc:
                raise SpecRuntimeError(f"Node '{node_id}': map: {exc}") from None
            if not isinstance(items, list):
                raise SpecRuntimeError(
                    f"Node '{node_id}': map must give a list, got {type(items).__name__}"
                )
            self.maps[node_id] = _Mapping(items=items, results=[None] * len(items))
            if not items:
                self.finish(node_id, outcomes.mapped([], []))
            self.fill_map(node_id)
        return progressed

    def runs_alone(self, node_id: str) -> bool:
        """True when nothing else is running or could start: run in this thread, no pool."""
        if self.pending or self.maps.keys() - self.nodes.keys():
            return False
        others = [n for n in self.order if n not in self.started and n != node_id]
        return not any(all(e.source in self.nodes for e in self.incoming[n]) for n in others)

    def fill_map(self, node_id: str) -> None:
        mapping = self.maps[node_id]
        limit = self.by_id[node_id].concurrency
        while mapping.in_flight < limit and mapping.next_index < len(mapping.items):
            index = mapping.next_index
            mapping.next_index += 1
            mapping.in_flight += 1
            self.submit(node_id, index, self.context(mapping.items[index], mapped=True))

    def finish(self, node_id: str, outcome: dict[str, Any]) -> None:
        self.nodes[node_id] = outcome
        if outcome["status"] == COMPLETED:
            self.emit("node.completed", node_id)
        elif "succeeded" in outcome:  # a mapped node with handled item failures
            failed_items = [f["index"] for f in outcome["failed"]]
            self.emit("node.failed", node_id, handled=True, failed_items=failed_items)

    def collect(self, future: PrefectFuture[Any]) -> None:
        node_id, index = self.pending.pop(future)
        try:
            result = future.result()
        except Exception as exc:
            self.fail(node_id, index, exc)
            return
        self.record(node_id, index, outcomes.completed(outcomes.as_output(result)))

    def record(self, node_id: str, index: int | None, outcome: dict[str, Any]) -> None:
        if index is None:
            self.finish(node_id, outcome)
            return
        mapping = self.maps[node_id]
        mapping.results[index] = outcome
        mapping.in_flight -= 1
        mapping.done += 1
        if mapping.done == len(mapping.items):
            self.finish(node_id, outcomes.mapped(mapping.items, mapping.results))  # type: ignore[arg-type]
        else:
            self.fill_map(node_id)

    def execute(self) -> dict[str, Any]:
        """Run every node; return ``{node_id: {"status", "output", "error", ...}}``."""
        self.emit("workflow.started", nodes=len(self.spec.nodes))
        try:
            while len(self.nodes) < len(self.spec.nodes):
                while self.start_ready():
                    pass
                if not self.pending:
                    break
                self.collect(self.done.get())
        except Exception as exc:
            self.emit("workflow.finished", status="failed", error=type(exc).__name__)
            raise
        self.emit(
            "workflow.finished",
            status="completed",
            skipped=sorted(k for k, v in self.nodes.items() if v["status"] == SKIPPED),
            failed=sorted(k for k, v in self.nodes.items() if v["status"] == FAILED),
        )
        return self.nodes
