"""Sustained throughput: a 5-node flow against local services, deployed on a Prefect server on
PostgreSQL and run by 1 and 2 workers of each worker type we ship (``process``,
``agency-prefork``), as catalogued nodes (ours) and as the same steps in bare Prefect tasks (the
floor), alternating.

    python -m benchmarks.throughput [--quick] [--seconds N] [--limit L]

The flow fetches a lead from a local HTTP server (``http_request``), renders a summary
(``transform``), picks a branch (``route``), logs a line (``log_message``) and writes the summary
to the local file storage (``store_file``); the bare flow does the same with httpx, jinja2's
sandbox, the run logger and a file write. Each mode keeps its deployment's queue full
(``(workers + 1) * limit`` runs not yet finished) for a window of 3 minutes (``--quick``: 60 s,
``--seconds`` overrides), after a warm-up that lasts until each worker could have finished a
run; then it stops creating runs and waits until all have ended.

Per mode it prints runs/s completed in the window, p95 creation → completed of those runs,
CPU-s per run (server + worker process trees + this process, which creates the runs and serves
the HTTP requests; PostgreSQL's own CPU is not counted) and ``failed`` (runs that ended other
than Completed; goal 0). Per worker type: ``ratio_<type>_<n>w`` (ours / bare runs/s with n
workers) and ``ratio_<type>`` (the better of ours' 1- and 2-worker runs/s over the better of
bare's; goal >= 0.9). Last line: ``throughput_vs_bare``, the lowest ``ratio_<type>``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse
from uuid import UUID

from benchmarks import _runs
from benchmarks._prefect import prefect_server

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter

OURS_FILE = '''
"""The benchmark's flow on catalogued nodes."""

from prefect import flow

from nodes.http_request import HttpRequestInput, http_request
from nodes.log_message import LogMessageInput, log_message
from nodes.route import RouteCase, RouteInput, route
from nodes.store_file import StoreFileInput, store_file
from nodes.transform import TransformInput, transform


@flow(name="bench-ours")
def ours(url: str, n: int = 0) -> str:
    lead = http_request(HttpRequestInput(client="bench", url=url, query={"n": n})).body
    summary = transform(
        TransformInput(client="bench", data=lead, template="{{ name }} scored {{ score }}")
    ).value
    branch = route(
        RouteInput(client="bench", data=lead, default="cold",
                   cases=[RouteCase(branch="hot", when="score >= 50")])
    ).branch
    log_message(LogMessageInput(client="bench", message="lead {{ n }} is {{ branch }}",
                                context={"n": n, "branch": branch}))
    return store_file(StoreFileInput(client="bench", name=f"{branch}.txt", content=summary)).key
'''

BARE_FILE = '''
"""The same five steps as bare Prefect tasks (no cache policy, like nodes)."""

from pathlib import Path
from typing import Any

import httpx
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@task(cache_policy=NO_CACHE)
def fetch(url: str, n: int) -> Any:
    with httpx.Client(timeout=30) as http:
        response = http.get(url, params={"n": n})
    response.raise_for_status()
    return response.json()


@task(cache_policy=NO_CACHE)
def summarise(lead: dict[str, Any]) -> str:
    return ENV.from_string("{{ name }} scored {{ score }}").render(lead)


@task(cache_policy=NO_CACHE)
def choose(lead: dict[str, Any]) -> str:
    return "hot" if ENV.compile_expression("score >= 50")(**lead) else "cold"


@task(cache_policy=NO_CACHE)
def log(n: int, branch: str) -> None:
    line = ENV.from_string("lead {{ n }} is {{ branch }}").render(n=n, branch=branch)
    get_run_logger().info("%s", line)


@task(cache_policy=NO_CACHE)
def store(root: str, name: str, content: str) -> str:
    path = Path(root, "bench", "bench-bare", str(flow_run.id), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return str(path)


@flow(name="bench-bare")
def bare(url: str, root: str, n: int = 0) -> str:
    lead = fetch(url, n)
    summary = summarise(lead)
    branch = choose(lead)
    log(n, branch)
    return store(root, f"{branch}.txt", summary)
'''

#: Label in the output → the worker type ``prefect worker start --type`` takes.
WORKER_TYPES = {"process": "process", "prefork": "agency-prefork"}
WARM_UP_LIMIT_S = 180.0
DRAIN_LIMIT_S = 300.0


class _Lead(BaseHTTPRequestHandler):
    """``GET /lead?n=N`` → 200 ``{"n", "name", "score"}`` (application/json)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        n = int(parse_qs(urlparse(self.path).query).get("n", ["0"])[0])
        body = json.dumps({"n": n, "name": f"lead {n}", "score": n * 37 % 100}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (overridden name)
        """Quiet: one line per request would swamp the benchmark's output."""


@contextmanager
def lead_service() -> Iterator[str]:
    """A local HTTP service in a thread of this process; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Lead)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/lead"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mode:
    """One cell of the matrix and what its window measured."""

    kind: str
    workers: int
    variant: str
    runs: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.workers}w_{self.variant}"

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def _filter(deployment: UUID, states: list[str], **fields: Any) -> FlowRunFilter:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=states))
    deployment_id = FlowRunFilterDeploymentId(any_=[deployment])
    return FlowRunFilter(deployment_id=deployment_id, state=state, **fields)


def _ended(after: datetime, before: datetime | None = None) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilterEndTime

    return {"end_time": FlowRunFilterEndTime(after_=after, before_=before)}


class Feeder:
    """Keeps ``ahead`` runs of one deployment unfinished by creating runs as others end."""

    ACTIVE = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING"]

    def __init__(self, client: PrefectClient, deployment: UUID, params: dict[str, Any]) -> None:
        self.client, self.deployment, self.params = client, deployment, params
        self.created: list[UUID] = []

    async def top_up(self, ahead: int) -> None:
        active = await self.client.count_flow_runs(
            flow_run_filter=_filter(self.deployment, self.ACTIVE)
        )
        new = await asyncio.gather(
            *(
                self.client.create_flow_run_from_deployment(
                    self.deployment, parameters={**self.params, "n": len(self.created) + i}
                )
                for i in range(ahead - active)
            )
        )
        self.created += [run.id for run in new]

    async def feed_until(
        self, ahead: int, done: Callable[[], Awaitable[bool]], limit_s: float
    ) -> None:
        """Top up every 0.25 s until ``await done()`` is true or ``limit_s`` passed."""
        deadline = time.monotonic() + limit_s
        while not await done() and time.monotonic() < deadline:
            await self.top_up(ahead)
            await asyncio.sleep(0.25)

    async def drain(self) -> None:
        """Wait until every run has ended.

        Runs are not deleted or cancelled to shorten this: a worker may already have taken a
        run that still reads Scheduled, and would then start it for nothing (or fail on a 404)
        while the next mode is measured."""
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while time.monotonic() < deadline and await self.client.count_flow_runs(
            flow_run_filter=_filter(self.deployment, self.ACTIVE)
        ):
            await asyncio.sleep(0.5)

    async def failed(self) -> int:
        """Runs of this feeder that ended other than Completed."""
        from prefect.client.schemas.filters import FlowRunFilterId

        bad = ["FAILED", "CRASHED", "CANCELLED"]
        runs = _filter(self.deployment, bad, id=FlowRunFilterId(any_=self.created))
        return await self.client.count_flow_runs(flow_run_filter=runs)


async def _completed(
    client: PrefectClient, deployment: UUID, start: datetime, end: datetime
) -> list[float]:
    """Creation → end seconds of the runs that completed between ``start`` and ``end``."""
    runs_filter = _filter(deployment, ["COMPLETED"], **_ended(start, end))
    latencies: list[float] = []
    while page := await client.read_flow_runs(
        flow_run_filter=runs_filter, limit=200, offset=len(latencies)
    ):
        latencies += [(r.end_time - r.created).total_seconds() for r in page]
    return latencies


async def measure(
    mode: Mode,
    deployment: UUID,
    params: dict[str, Any],
    ahead: int,
    seconds: float,
    pids: list[int],
) -> None:
    """Warm up, then keep the queue full for ``seconds`` and record the window into ``mode``."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        feeder = Feeder(client, deployment, params)
        begun = datetime.now(UTC)

        async def warm() -> bool:
            done = _filter(deployment, ["COMPLETED"], **_ended(begun))
            return await client.count_flow_runs(flow_run_filter=done) >= 2 * mode.workers

        await feeder.feed_until(ahead, warm, WARM_UP_LIMIT_S)
        cpu = sum(_runs.tree_cpu(p) for p in pids) + time.process_time()
        start, clock = datetime.now(UTC), time.monotonic()

        async def over() -> bool:
            return time.monotonic() - clock >= seconds

        await feeder.feed_until(ahead, over, seconds + 60)
        mode.cpu = sum(_runs.tree_cpu(p) for p in pids) + time.process_time() - cpu
        mode.seconds = time.monotonic() - clock
        end = start + timedelta(seconds=mode.seconds)
        await feeder.drain()
        mode.latencies = await _completed(client, deployment, start, end)
        mode.runs = len(mode.latencies)
        mode.failed = await feeder.failed()


def _deploy(project: Path) -> dict[tuple[str, str], UUID]:
    """Deploy ours and bare on each worker type's pool; ``{(kind, variant): deployment id}``."""
    from prefect import flow

    (project / "ours.py").write_text(textwrap.dedent(OURS_FILE))
    (project / "bare.py").write_text(textwrap.dedent(BARE_FILE))
    pools = {f"bench-{kind}": wtype for kind, wtype in WORKER_TYPES.items()}
    asyncio.run(_runs.create_pools(pools))
    deployments = {}
    for variant in ("ours", "bare"):
        source = flow.from_source(source=str(project), entrypoint=f"{variant}.py:{variant}")
        for kind in WORKER_TYPES:
            with redirect_stdout(io.StringIO()):  # deploy() prints a table per deployment
                deployments[kind, variant] = source.deploy(
                    name=f"{kind}-{variant}",
                    work_pool_name=f"bench-{kind}",
                    build=False,
                    push=False,
                    print_next_steps=False,
                    ignore_warnings=True,
                )
    return deployments


def run_matrix(seconds: float, limit: int) -> list[Mode]:
    """Every worker type with 1 then 2 workers, ours and bare in alternating order."""
    from agency.settings import get_settings

    project = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    modes: list[Mode] = []
    with prefect_server(postgres=True), lead_service() as url:
        server = [pid] if (pid := _runs.server_pid()) else []
        deployments = _deploy(project)
        params = {"ours": {"url": url}, "bare": {"url": url, "root": str(get_settings().files_dir)}}
        for kind, wtype in WORKER_TYPES.items():
            workers = []
            try:
                for count in (1, 2):
                    log = project / f"{kind}-{count}.log"
                    workers.append(_runs.start_worker(f"bench-{kind}", wtype, limit, log))
                    # ours first in every other pair, so neither variant always runs first
                    variants = ["ours", "bare"] if len(modes) % 4 == 0 else ["bare", "ours"]
                    for variant in variants:
                        mode = Mode(kind, count, variant)
                        pids = server + [w.pid for w in workers]
                        ahead = (count + 1) * limit
                        dep = deployments[kind, variant]
                        asyncio.run(measure(mode, dep, params[variant], ahead, seconds, pids))
                        print(
                            f"# {mode.name}: {mode.runs} runs in {mode.seconds:.0f} s, "
                            f"{mode.failed} failed",
                            flush=True,
                        )
                        modes.append(mode)
            finally:
                _runs.stop_workers(workers)
    # another session editing the project's source makes a prefork worker replace its template
    logs = [log.read_text(errors="replace") for log in project.glob("prefork-*.log")]
    replaced = sum(text.count("Replacing prefork template") for text in logs)
    print(f"# prefork_template_replacements={replaced} logs={project}")
    return modes


def _ratio(ours: float, bare: float) -> float:
    return ours / bare if bare else float("inf")  # no bare run completed: nothing to compare


def report(modes: list[Mode]) -> None:
    """Print each mode's figures, the ratios and, last, ``throughput_vs_bare``."""
    for mode in modes:
        print(f"{mode.name}_runs_per_s={mode.rate:.3f}")
        p95 = _runs.percentile(mode.latencies, 0.95)
        print(f"{mode.name}_p95_created_to_completed_s={p95:.2f}")
        print(f"{mode.name}_cpu_s_per_run={mode.cpu / max(mode.runs, 1):.3f}")
        print(f"{mode.name}_failed={mode.failed}")
    rate = {(m.kind, m.workers, m.variant): m.rate for m in modes}
    ratios = []
    for kind in WORKER_TYPES:
        for count in (1, 2):
            ratio = _ratio(rate[kind, count, "ours"], rate[kind, count, "bare"])
            print(f"ratio_{kind}_{count}w={ratio:.3f}")
        best = {v: max(rate[kind, c, v] for c in (1, 2)) for v in ("ours", "bare")}
        ratios.append(_ratio(best["ours"], best["bare"]))
        print(f"ratio_{kind}={ratios[-1]:.3f}")
    print(f"throughput_vs_bare={min(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="60 s per mode instead of 180 s")
    parser.add_argument("--seconds", type=float, help="seconds per mode (overrides --quick)")
    parser.add_argument("--limit", type=int, default=4, help="worker concurrency limit")
    args = parser.parse_args()
    seconds = args.seconds or (60.0 if args.quick else 180.0)
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    os.environ["PREFECT_WORKER_PREFETCH_SECONDS"] = "1"
    report(run_matrix(seconds, args.limit))


if __name__ == "__main__":
    main()
