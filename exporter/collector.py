"""Worker-side Prometheus exporter: flow runs by state, node durations, LLM tokens and cost.

:class:`AgencyCollector` is a ``prometheus_client`` custom collector. Each scrape asks

- the Prefect API (``POST /api/flow_runs/filter`` and ``/api/task_runs/filter``) for the runs
  and task runs that ended since the previous scrape (plus an overlap, de-duplicated, because
  task-run states reach the API through events a moment late) and for the flow runs active
  now; labels ``client`` and ``workflow`` come from the flow run's ``client:<slug>`` and
  ``workflow:<slug>`` tags (empty when it has none), ``node`` is the task's name (its kind);
- the platform DB for ``SELECT client, workflow, model, count(*), sum(...) FROM llm_usage
  GROUP BY client, workflow, model``, so the LLM counters equal the table's totals and survive
  a restart of the exporter.

Flow-run and node counters start at zero when the exporter starts. A source that cannot be
read gives ``agency_exporter_up{source=...} 0`` and a logged warning, never a failed scrape.

Example::

    running = serve_exporter(get_settings(), "127.0.0.1", 9464)  # GET /metrics
    running.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID
from wsgiref.simple_server import WSGIServer

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterEndTime,
    TaskRunFilterState,
    TaskRunFilterStateType,
    TaskRunFilterSubFlowRuns,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from agency.db import LlmUsage, session_scope
from agency.settings import Settings

__all__ = ["NODE_BUCKETS", "AgencyCollector", "RunningExporter", "serve_exporter"]

log = logging.getLogger(__name__)

NODE_BUCKETS: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_LE = [*(str(float(b)) for b in NODE_BUCKETS), "+Inf"]
FINISHED = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
ACTIVE = [StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]
OVERLAP = timedelta(minutes=10)  # how late a run's end may reach the API and still count
PAGE = 200
MAX_PAGES = 50  # per query and scrape: at most 10,000 rows
LABEL_CACHE = 50_000

T = TypeVar("T")
RunKey = tuple[str, str]  # (client, workflow)


def run_labels(tags: Iterable[str]) -> RunKey:
    """``(client, workflow)`` from a flow run's ``client:<slug>`` / ``workflow:<slug>`` tags."""
    client = workflow = ""
    for tag in tags:
        prefix, _, value = tag.partition(":")
        if prefix == "client":
            client = value
        elif prefix == "workflow":
            workflow = value
    return client, workflow


def node_kind(task_run: TaskRun) -> str:
    """The node kind of a task run: its name without the ``-<n>`` Prefect appends in a flow."""
    if task_run.flow_run_id is None:
        return task_run.name
    return task_run.name.rsplit("-", 1)[0]


@dataclass
class _Buckets:
    """One histogram series: per-bucket counts (not cumulative), sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(NODE_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        index = next((i for i, le in enumerate(NODE_BUCKETS) if value <= le), len(NODE_BUCKETS))
        self.counts[index] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for le, count in zip(_LE, self.counts, strict=True):
            running += count
            out.append((le, float(running)))
        return out


def _pages(read: Callable[[int], Sequence[T]]) -> list[T]:
    """Call ``read(offset)`` page by page until a short page (or ``MAX_PAGES``)."""
    rows: list[T] = []
    for page in range(MAX_PAGES):
        batch = read(page * PAGE)
        rows.extend(batch)
        if len(batch) < PAGE:
            return rows
    log.warning("exporter: more than %d rows in one query; the rest waits", PAGE * MAX_PAGES)
    return rows


def _state(run: FlowRun | TaskRun) -> str:
    return run.state_type.value if run.state_type else "UNKNOWN"


def _reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


class AgencyCollector(Collector):
    """Reads Prefect and the platform DB at every scrape (thread-safe; one scrape at a time)."""

    def __init__(
        self, database_url: str, *, api_url: str | None = None, timeout: float = 10.0
    ) -> None:
        self.database_url = database_url
        self.api_url = api_url or PREFECT_API_URL.value()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._started = datetime.now(UTC)
        self._cursor = self._started
        self._seen_flow_runs: dict[tuple[UUID, datetime], datetime] = {}
        self._seen_task_runs: dict[tuple[UUID, datetime], datetime] = {}
        self._finished: Counter[tuple[str, str, str]] = Counter()
        self._durations: dict[tuple[str, str, str, str], _Buckets] = {}
        self._labels: OrderedDict[UUID, RunKey] = OrderedDict()
        self._up: dict[str, bool] = {}

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: registration must not scrape Prefect or the DB."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One scrape: the Prefect metrics, the LLM metrics, then ``up`` and scrape times."""
        with self._lock:
            up = GaugeMetricFamily(
                "agency_exporter_up", "1 when the source answered this scrape.", labels=["source"]
            )
            seconds = GaugeMetricFamily(
                "agency_exporter_scrape_duration_seconds",
                "Time this scrape spent reading the source.",
                labels=["source"],
            )
            metrics: list[Metric] = []
            for source, read in (("prefect", self._prefect), ("database", self._database)):
                began = time.perf_counter()
                try:
                    metrics += read()
                    ok = True
                except Exception as exc:  # a scrape must answer whatever the source does
                    ok = False
                    if self._up.get(source, True):
                        log.warning("exporter: cannot read %s: %s", source, _reason(exc))
                    if source == "prefect":
                        metrics += self._prefect_totals()
                else:
                    if not self._up.get(source, True):
                        log.info("exporter: %s is readable again", source)
                self._up[source] = ok
                up.add_metric([source], 1.0 if ok else 0.0)
                seconds.add_metric([source], time.perf_counter() - began)
            yield from metrics
            yield up
            yield seconds

    # ---- Prefect ------------------------------------------------------------------------------

    def _client(self) -> SyncPrefectClient:
        return SyncPrefectClient(
            self.api_url,
            auth_string=PREFECT_API_AUTH_STRING.value(),
            api_key=PREFECT_API_KEY.value(),
            httpx_settings={"timeout": self.timeout},
        )

    def _prefect(self) -> list[Metric]:
        now = datetime.now(UTC)
        since = max(self._cursor - OVERLAP, self._started)
        with self._client() as api:
            ended = self._ended_flow_runs(api, since)
            tasks = self._ended_task_runs(api, since)
            labels = {run.id: run_labels(run.tags) for run in ended}
            known = labels.keys() | self._labels.keys()
            missing = {t.flow_run_id for t in tasks if t.flow_run_id and t.flow_run_id not in known}
            labels |= self._labels_of(api, missing)
            active = self._active_flow_runs(api, now)
        # nothing changes until every read succeeded, so a failed scrape is simply retried
        for run_id, key in labels.items():
            self._remember(run_id, key)
        for run in ended:
            if self._first_time(self._seen_flow_runs, run.id, run.end_time):
                self._finished[(*labels[run.id], _state(run))] += 1
        for task in tasks:
            if not self._first_time(self._seen_task_runs, task.id, task.end_time):
                continue
            if task.start_time is None or task.end_time is None:
                continue
            run_id = task.flow_run_id
            client, workflow = labels.get(run_id) or self._labels.get(run_id) or ("", "")  # type: ignore[arg-type]
            key = (client, workflow, node_kind(task), _state(task))
            seconds = (task.end_time - task.start_time).total_seconds()
            self._durations.setdefault(key, _Buckets()).observe(max(seconds, 0.0))
        self._cursor = now
        horizon = now - OVERLAP
        for seen in (self._seen_flow_runs, self._seen_task_runs):
            for old in [k for k, end in seen.items() if end < horizon]:
                del seen[old]
        return [*self._prefect_totals(), self._active_metric(active)]

    def _first_time(
        self, seen: dict[tuple[UUID, datetime], datetime], run_id: UUID, end: datetime | None
    ) -> bool:
        if end is None or (run_id, end) in seen:
            return False
        seen[(run_id, end)] = end
        return True

    def _remember(self, run_id: UUID, key: RunKey) -> None:
        self._labels[run_id] = key
        self._labels.move_to_end(run_id)
        while len(self._labels) > LABEL_CACHE:
            self._labels.popitem(last=False)

    def _ended_flow_runs(self, api: SyncPrefectClient, since: datetime) -> list[FlowRun]:
        flt = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=FINISHED)),
            end_time=FlowRunFilterEndTime(after_=since),
        )
        return _pages(
            lambda offset: api.read_flow_runs(
                flow_run_filter=flt, sort=FlowRunSort.END_TIME_DESC, limit=PAGE, offset=offset
            )
        )

    def _ended_task_runs(self, api: SyncPrefectClient, since: datetime) -> list[TaskRun]:
        flt = TaskRunFilter(
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=FINISHED)),
            end_time=TaskRunFilterEndTime(after_=since),
            subflow_runs=TaskRunFilterSubFlowRuns(exists_=False),
        )
        return _pages(
            lambda offset: api.read_task_runs(
                task_run_filter=flt, sort=TaskRunSort.END_TIME_DESC, limit=PAGE, offset=offset
            )
        )

    def _labels_of(self, api: SyncPrefectClient, run_ids: set[UUID]) -> dict[UUID, RunKey]:
        out: dict[UUID, RunKey] = {}
        ids = sorted(run_ids)
        for start in range(0, len(ids), PAGE):
            flt = FlowRunFilter(id=FlowRunFilterId(any_=ids[start : start + PAGE]))
            for run in api.read_flow_runs(flow_run_filter=flt, limit=PAGE):
                out[run.id] = run_labels(run.tags)
        return out

    def _active_flow_runs(self, api: SyncPrefectClient, now: datetime) -> list[FlowRun]:
        """Runs pending, running, paused or cancelling, and scheduled runs already due (late)."""
        filters = [
            FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))),
            FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                expected_start_time=FlowRunFilterExpectedStartTime(before_=now),
            ),
        ]
        runs: list[FlowRun] = []
        for flt in filters:
            runs += _pages(
                lambda offset, flt=flt: api.read_flow_runs(
                    flow_run_filter=flt, sort=FlowRunSort.ID_DESC, limit=PAGE, offset=offset
                )
            )
        return runs

    def _active_metric(self, runs: list[FlowRun]) -> Metric:
        gauge = GaugeMetricFamily(
            "agency_flow_runs_active",
            "Flow runs now pending, running, paused or cancelling, and scheduled runs already "
            "due (late), by client, workflow and state type.",
            labels=["client", "workflow", "state"],
        )
        counts = Counter(
            (*run_labels(run.tags), _state(run)) for run in {r.id: r for r in runs}.values()
        )
        for key, count in sorted(counts.items()):
            gauge.add_metric(list(key), float(count))
        return gauge

    def _prefect_totals(self) -> list[Metric]:
        finished = CounterMetricFamily(
            "agency_flow_runs_finished",
            "Flow runs that ended since the exporter started, by client, workflow and final "
            "state type.",
            labels=["client", "workflow", "state"],
        )
        for key, count in sorted(self._finished.items()):
            finished.add_metric(list(key), float(count))
        durations = HistogramMetricFamily(
            "agency_node_duration_seconds",
            "Wall time of finished node (task) runs, start to end, by client, workflow, node "
            "kind and final state type.",
            labels=["client", "workflow", "node", "state"],
        )
        for key, buckets in sorted(self._durations.items()):
            durations.add_metric(list(key), buckets.cumulative(), buckets.total)
        return [finished, durations]

    # ---- platform DB --------------------------------------------------------------------------

    def _database(self) -> list[Metric]:
        labels = ["client", "workflow", "model"]
        calls = CounterMetricFamily("agency_llm_calls", "LLM calls recorded.", labels=labels)
        tokens = CounterMetricFamily(
            "agency_llm_tokens", "LLM tokens (kind: prompt, completion).", labels=[*labels, "kind"]
        )
        cost = CounterMetricFamily(
            "agency_llm_cost_usd",
            "LLM cost in USD (calls to models without a price count 0).",
            labels=labels,
        )
        query = select(
            LlmUsage.client,
            LlmUsage.workflow,
            LlmUsage.model,
            func.count(),
            func.sum(LlmUsage.prompt_tokens),
            func.sum(LlmUsage.completion_tokens),
            func.sum(LlmUsage.cost_usd),
        ).group_by(LlmUsage.client, LlmUsage.workflow, LlmUsage.model)
        with session_scope(self.database_url) as session:
            rows: list[Any] = list(session.execute(query).all())
        for client, workflow, model, count, prompt, completion, usd in sorted(
            rows, key=lambda r: (r[0], r[1] or "", r[2])
        ):
            key = [client, workflow or "", model]
            calls.add_metric(key, float(count))
            tokens.add_metric([*key, "prompt"], float(prompt or 0))
            tokens.add_metric([*key, "completion"], float(completion or 0))
            cost.add_metric(key, float(usd or 0.0))
        return [calls, tokens, cost]


@dataclass
class RunningExporter:
    """A started exporter: its HTTP server, serving thread and collector."""

    server: WSGIServer
    thread: threading.Thread
    collector: AgencyCollector

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` of the running server."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve_exporter(
    settings: Settings, host: str, port: int, *, api_url: str | None = None
) -> RunningExporter:
    """Serve ``GET /metrics`` on ``host:port`` in a daemon thread and return at once.

    ``api_url`` defaults to ``PREFECT_API_URL``; the DB is ``settings.platform_database_url``
    (read only; the exporter never migrates it). Port 0 picks a free port (see ``.url``).
    """
    collector = AgencyCollector(settings.platform_database_url, api_url=api_url)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return RunningExporter(server, thread, collector)
