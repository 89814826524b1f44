"""What runs waiting for an approval cost on a prefork worker, before and now, and how long an
answer takes to resume one.

    python -m benchmarks.long_waits [--quick] [--waiting N] [--answers K] [--postgres]

Against a throwaway Prefect server (SQLite, or PostgreSQL with ``--postgres``) and a SQLite
platform DB, two phases, each on a fresh ``agency worker --pool P --limit N`` (the prefork
worker; the same limit in both so that only the way of waiting differs):

- ``before``: ``N`` runs of a flow (one task, then the approval) whose approval waits as the
  ``approve`` node did before suspension: ``pause_flow_run(wait_for_input=ApprovalAnswer,
  timeout=...)`` in its process, polling every 10 s (``nodes.approve._pause``, the path a run
  without a deployment still takes), measured once all ``N`` are ``Paused``;
- ``now``: ``N`` runs of the same flow with the real ``approve`` node (and the task made
  ``resumable``), measured once all ``N`` are ``Suspended`` and their processes are gone.

Per phase: processes of the worker and its descendants (its warm template, run children) and
their PSS memory summed (``/proc/<pid>/smaps_rollup``), idle (template ready, no run yet) and
with ``N`` waiting (each once stable); seconds to create the ``N`` runs (one
``run_deployment`` after the other) and from the first creation to all waiting; the medians
from a run's creation to its ``Running`` state and from there to its waiting state. Then ``K``
of the runs are answered one at a time through ``services.approvals.answer_approval`` (as the
portal and ``agency approvals answer`` do), timing answer → the run's next ``Running`` state and
→ ``Completed`` (server state timestamps).
Before, the server sets ``Running`` as it resumes the run, and the waiting process notices at
its next poll. ``N`` is 50 (10 with ``--quick``), ``K`` 5. Load averages are printed per phase;
figures are noisy on a shared machine. Last line: the headline.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._prefect import prefect_server
from benchmarks._runs import process_tree, start_agency_worker, stop_workers

PROJECT_DIR = Path(__file__).resolve().parent.parent
CLIENT = "bench"

FLOWS = '''
"""The two ways of waiting for an approval, in the same small flow."""

from prefect import flow, task
from prefect.context import FlowRunContext

from nodes._base import node_task
from nodes._resume import resumable
from nodes.approve import ApproveInput, ApproveOutput, _pause, approve


@task
def draft(client: str) -> str:
    return f"A draft for {client}"


@node_task("approve")
def approve_in_process(params: ApproveInput) -> ApproveOutput:
    """The approve node before suspension: pause the run and wait in this process."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    return _pause(params, context.flow_run.id)


def _ask(client: str) -> ApproveInput:
    return ApproveInput(client=client, message="Send it?", timeout_seconds=3600)


@flow
def waits_in_process(client: str) -> str:
    draft(client)
    return approve_in_process(_ask(client)).decision


@flow
def suspends(client: str) -> str:
    resumable(draft)(client)
    return resumable(approve)(_ask(client)).decision
'''


@dataclass(frozen=True)
class Footprint:
    """Processes of the worker's tree and their PSS memory summed."""

    processes: int
    pss_mb: float


def _pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0  # it has just exited
    line = next((x for x in text.splitlines() if x.startswith("Pss:")), "Pss: 0 kB")
    return int(line.split()[1])


def footprint(pid: int) -> Footprint:
    """The worker ``pid`` and its descendants: how many, and their PSS in MB."""
    pids = [p for p in process_tree(pid) if Path(f"/proc/{p}").exists()]
    return Footprint(len(pids), sum(_pss_kb(p) for p in pids) / 1024)


def _settled(pid: int, stable_s: float = 3.0, limit_s: float = 90.0) -> Footprint:
    """The footprint once neither the process count nor the PSS (by 1 %) has changed for
    ``stable_s`` seconds (the warm template imports for a few seconds after it starts)."""
    last, since, deadline = footprint(pid), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - since < stable_s and time.monotonic() < deadline:
        time.sleep(0.5)
        now = footprint(pid)
        if now.processes != last.processes or abs(now.pss_mb - last.pss_mb) > last.pss_mb / 100:
            since = time.monotonic()
        last = now
    return last


def _loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _wait_registered(pool: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Wait until a worker of ``pool`` has sent its first heartbeat."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as api:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker of {pool} exited with {proc.returncode}")
            try:
                if api.read_workers_for_work_pool(pool):
                    return
            except Exception:  # the pool is created by the worker itself
                pass
            time.sleep(0.5)
    raise TimeoutError(f"no worker of {pool} after {timeout}s")


def deploy(project: Path, function: str, pool: str) -> str:
    """Deploy ``waiting.py:function`` from ``project`` to ``pool``; its ``flow/deployment``."""
    from prefect import flow

    name = f"{function}-{uuid.uuid4().hex[:8]}"
    source = flow.from_source(source=str(project), entrypoint=f"waiting.py:{function}")
    with redirect_stdout(io.StringIO()):  # Prefect prints a table of the deployments
        source.deploy(
            name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False
        )
    return f"{source.name}/{name}"


def _wait_all(run_ids: list[uuid.UUID], state_name: str, started: float, timeout: float) -> float:
    """Seconds from ``started`` (monotonic) until every run is in the state ``state_name``;
    fails on a final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
    with get_client(sync_client=True) as api:
        while time.monotonic() - started < timeout:
            runs = api.read_flow_runs(flow_run_filter=ids, limit=len(run_ids))
            names = [r.state.name if r.state else "" for r in runs]
            failed = [r for r in runs if r.state is not None and r.state.is_final()]
            if failed:
                raise RuntimeError(f"{len(failed)} runs ended while waiting: {failed[0].state}")
            if len(runs) == len(run_ids) and all(n == state_name for n in names):
                return time.monotonic() - started
            time.sleep(1.0)
    raise TimeoutError(f"not all {len(run_ids)} runs {state_name} after {timeout}s")


def _spans(run_ids: list[uuid.UUID]) -> tuple[list[float], list[float]]:
    """Per run, seconds from its first state (Scheduled) to its first Running, and from there to
    its first Paused-type state."""
    from prefect.client.orchestration import get_client

    to_running, to_waiting = [], []
    with get_client(sync_client=True) as api:
        for run_id in run_ids:
            states = api.read_flow_run_states(run_id)
            created = min(s.timestamp for s in states)
            running = min(s.timestamp for s in states if s.is_running())
            paused = min(s.timestamp for s in states if s.is_paused())
            to_running.append((running - created).total_seconds())
            to_waiting.append((paused - running).total_seconds())
    return to_running, to_waiting


def _answer_times(settings: Any, run_id: uuid.UUID, timeout: float = 180) -> tuple[float, float]:
    """Answer one run's approval; seconds from the answer to its next Running, to Completed."""
    from prefect.client.orchestration import get_client

    from services.approvals import answer_approval

    answered = datetime.now(UTC)
    answer_approval(settings, CLIENT, str(run_id), approved=True, actor="bench")
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as api:
        while True:
            state = api.read_flow_run(run_id).state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {state} {timeout}s after its answer")
            time.sleep(0.3)
        if not state.is_completed():
            raise RuntimeError(f"run {run_id} ended {state} after its answer")
        states = [s for s in api.read_flow_run_states(run_id) if s.timestamp >= answered]
    running = min(s.timestamp for s in states if s.is_running())
    return (running - answered).total_seconds(), (state.timestamp - answered).total_seconds()


def phase(
    name: str, function: str, wait_state: str, project: Path, settings: Any, args: Any
) -> dict[str, float]:
    """One worker, ``args.waiting`` runs of ``function`` waiting, ``args.answers`` answered."""
    from prefect.deployments import run_deployment

    pool = f"bench-waits-{name}"
    log = project.parent / f"{name}-worker.log"
    worker = start_agency_worker(pool, args.waiting, log, project=PROJECT_DIR)
    figures: dict[str, float] = {}
    try:
        _wait_registered(pool, worker)
        time.sleep(3)  # past its start-up
        idle = _settled(worker.pid)
        print(f"{name}_loadavg_idle={_loadavg()}", flush=True)
        deployment = deploy(project, function, pool)
        started = time.monotonic()
        runs = [
            run_deployment(
                deployment,
                parameters={"client": CLIENT},
                timeout=0,
                tags=[f"client:{CLIENT}"],
            ).id
            for _ in range(args.waiting)
        ]
        figures["create_runs_s"] = time.monotonic() - started
        figures["all_waiting_s"] = _wait_all(runs, wait_state, started, timeout=900)
        waiting = _settled(worker.pid)
        to_running, to_waiting = _spans(runs)
        print(f"{name}_loadavg_waiting={_loadavg()}", flush=True)
        times = [_answer_times(settings, run_id) for run_id in runs[: args.answers]]
        print(f"{name}_loadavg_answers={_loadavg()}", flush=True)
    finally:
        stop_workers([worker])
    figures |= {
        "created_to_running_median_s": statistics.median(to_running),
        "running_to_waiting_median_s": statistics.median(to_waiting),
        "idle_processes": idle.processes,
        "idle_pss_mb": idle.pss_mb,
        "waiting_processes": waiting.processes,
        "waiting_pss_mb": waiting.pss_mb,
        "pss_mb_per_waiting_run": (waiting.pss_mb - idle.pss_mb) / args.waiting,
        "answer_to_running_median_s": statistics.median(t[0] for t in times),
        "answer_to_running_max_s": max(t[0] for t in times),
        "answer_to_completed_median_s": statistics.median(t[1] for t in times),
    }
    for key, value in figures.items():
        shown = f"{value:.0f}" if key.endswith("_processes") else f"{value:.2f}"
        print(f"{name}_{key}={shown}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 waiting runs")
    parser.add_argument("--waiting", type=int, default=None, help="runs waiting at once (50)")
    parser.add_argument("--answers", type=int, default=5, help="runs answered and timed (5)")
    parser.add_argument("--postgres", action="store_true", help="Prefect server on PostgreSQL")
    args = parser.parse_args()
    args.waiting = args.waiting or (10 if args.quick else 50)
    args.answers = min(args.answers, args.waiting)
    with prefect_server(postgres=args.postgres):
        from agency.db import upgrade
        from agency.settings import Settings
        from services.clients import add_client

        settings = Settings()  # AGENCY_HOME in the server's private home
        settings.home.mkdir(parents=True, exist_ok=True)
        upgrade(settings.platform_database_url)
        add_client(settings, CLIENT, "Bench")
        project = Path(tempfile.mkdtemp(prefix="bench-waits-", dir=settings.home)) / "project"
        project.mkdir()
        (project / "waiting.py").write_text(FLOWS)
        print(f"# logs {project.parent}", flush=True)
        print(f"waiting={args.waiting}", flush=True)
        print(f"loadavg_start={_loadavg()}", flush=True)
        before = phase("before", "waits_in_process", "Paused", project, settings, args)
        now = phase("now", "suspends", "Suspended", project, settings, args)
        print(f"loadavg_end={_loadavg()}", flush=True)
    print(
        f"headline={args.waiting}_waiting:"
        f"before_{before['waiting_processes']:.0f}_processes/{before['waiting_pss_mb']:.0f}MB,"
        f"now_{now['waiting_processes']:.0f}_processes/{now['waiting_pss_mb']:.0f}MB,"
        f"answer_to_running_median_{now['answer_to_running_median_s']:.1f}s"
    )


if __name__ == "__main__":
    main()
