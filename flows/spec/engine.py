"""Execute a validated spec inside one Prefect flow run.

Each node is one task run named by its id (``<id>[<i>]`` for map elements); nodes whose
upstreams are done start at once, so independent branches run concurrently. Results are
persisted with a cache key of run + node (+ element), so a retried run does not execute the
nodes that already completed (durable resume). Lifecycle events go to Prefect's event feed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.states import Completed
from pydantic import BaseModel, ValidationError

from agency.errors import SpecRuntimeError
from flows.spec.model import WorkflowSpec
from flows.spec.templates import evaluate, render
from flows.spec.validate import normalise_params, topological_order
from nodes.catalog import get_node

SKIPPED, COMPLETED = "skipped", "completed"


def _cache_key(node_key: str) -> CacheKeyFnPolicy:
    def key(context: TaskRunContext, _: dict[str, Any]) -> str:
        return f"spec-{context.task_run.flow_run_id}-{node_key}"

    return CacheKeyFnPolicy(cache_key_fn=key)


@task
def skipped(reason: str) -> Any:
    """Marks a node that did not run (its task run ends in state ``Skipped``)."""
    return Completed(name="Skipped", message=reason)


@dataclass
class _Mapping:
    items: list[Any]
    results: list[Any] = field(default_factory=list)
    next_index: int = 0
    in_flight: int = 0
    done: int = 0


class SpecRun:
    """The scheduler of one spec run (call :meth:`execute` inside a flow)."""

    def __init__(self, spec: WorkflowSpec, client: str, inputs: dict[str, Any]) -> None:
        self.spec, self.client, self.inputs = spec, client, inputs
        self.order, _ = topological_order(spec)
        self.incoming = {n.id: [e for e in spec.edges if e.to == n.id] for n in spec.nodes}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pending: dict[PrefectFuture[Any], tuple[str, int | None]] = {}
        self.maps: dict[str, _Mapping] = {}
        self.started: set[str] = set()
        self.run_id = str(flow_run.id or "local")

    # -- events ---------------------------------------------------------------------------------

    def emit(self, event: str, node: str | None = None, **payload: Any) -> None:
        resource = {
            "prefect.resource.id": f"agency.run.{self.client}.{self.spec.name}.{self.run_id}",
            "prefect.resource.name": f"{self.spec.name}/{self.client}",
            "agency.client": self.client,
            "agency.workflow": self.spec.name,
            "agency.flow-run-id": self.run_id,
        }
        if node:
            resource["agency.node"] = node
        related = [
            {
                "prefect.resource.id": f"prefect.flow-run.{self.run_id}",
                "prefect.resource.role": "flow-run",
            }
        ]
        emit_event(event=event, resource=resource, related=related, payload=payload)

    # -- helpers --------------------------------------------------------------------------------

    def context(self, item: Any = None, mapped: bool = False) -> dict[str, Any]:
        ctx: dict[str, Any] = {"inputs": self.inputs, "nodes": self.nodes, "client": self.client}
        if mapped:
            ctx["item"] = item
        return ctx

    def build_input(self, node_id: str, ctx: dict[str, Any]) -> BaseModel:
        spec_node = self.spec.node(node_id)
        model = get_node(spec_node.node).input_model
        params = normalise_params(spec_node.params, model)
        rendered: dict[str, Any] = {}
        for name, value in params.items():
            try:
                rendered[name] = render(value, ctx)
            except Exception as exc:  # jinja2 errors: undefined data, bad filters
                raise SpecRuntimeError(f"Node '{node_id}': param '{name}': {exc}") from None
        try:
            return model.model_validate({**rendered, "client": self.client})
        except ValidationError as exc:
            err = exc.errors(include_input=False, include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise SpecRuntimeError(f"Node '{node_id}': param '{loc}': {err['msg']}") from None

    def submit(
        self, node_id: str, index: int | None, ctx: dict[str, Any], inline: bool = False
    ) -> None:
        """Start one task run; ``inline`` runs it in this thread (nothing else can run now)."""
        spec_node = self.spec.node(node_id)
        entry = get_node(spec_node.node)
        params = self.build_input(node_id, ctx)
        key = node_id if index is None else f"{node_id}[{index}]"
        runnable = entry.task.with_options(
            task_run_name=key,
            cache_policy=_cache_key(key),
            persist_result=True,
            # nodes bound their own I/O; a thread-pool task's timeout cannot interrupt it and
            # only logs a warning per run
            timeout_seconds=None,
        )
        if inline:
            try:
                result = runnable(params)
            except Exception as exc:
                self.emit("node.failed", node_id, error=type(exc).__name__)
                raise
            self.record(node_id, index, result)
            return
        self.pending[runnable.submit(params)] = (node_id, index)

    def edge_active(self, edge: Any) -> bool:
        if self.nodes[edge.source]["status"] != COMPLETED:
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
                skipped.with_options(task_run_name=node_id)(reason)
                self.nodes[node_id] = {"status": SKIPPED, "output": None}
                self.emit("node.skipped", node_id, reason=reason)
                continue
            spec_node = self.spec.node(node_id)
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
                self.finish(node_id, [])
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
        limit = self.spec.node(node_id).concurrency
        while mapping.in_flight < limit and mapping.next_index < len(mapping.items):
            index = mapping.next_index
            mapping.next_index += 1
            mapping.in_flight += 1
            self.submit(node_id, index, self.context(mapping.items[index], mapped=True))

    def finish(self, node_id: str, output: Any) -> None:
        self.nodes[node_id] = {"status": COMPLETED, "output": output}
        self.emit("node.completed", node_id)

    def collect(self, future: PrefectFuture[Any]) -> None:
        node_id, index = self.pending.pop(future)
        try:
            result = future.result()
        except Exception as exc:
            self.emit("node.failed", node_id, error=type(exc).__name__)
            raise
        self.record(node_id, index, result)

    def record(self, node_id: str, index: int | None, result: Any) -> None:
        output = (
            result.model_dump(mode="json", by_alias=True)
            if isinstance(result, BaseModel)
            else result
        )
        if index is None:
            self.finish(node_id, output)
            return
        mapping = self.maps[node_id]
        mapping.results[index] = output
        mapping.in_flight -= 1
        mapping.done += 1
        if mapping.done == len(mapping.items):
            self.finish(node_id, mapping.results)
        else:
            self.fill_map(node_id)

    def execute(self) -> dict[str, Any]:
        """Run every node; return ``{node_id: {"status", "output"}}``."""
        self.emit("workflow.started", nodes=len(self.spec.nodes))
        try:
            while len(self.nodes) < len(self.spec.nodes):
                while self.start_ready():
                    pass
                if not self.pending:
                    break
                self.collect(next(iter(as_completed(list(self.pending)))))
        except Exception as exc:
            self.emit("workflow.finished", status="failed", error=type(exc).__name__)
            raise
        self.emit(
            "workflow.finished",
            status="completed",
            skipped=sorted(k for k, v in self.nodes.items() if v["status"] == SKIPPED),
        )
        return self.nodes
