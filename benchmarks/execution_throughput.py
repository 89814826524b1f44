"""Execution throughput: the same 5-node flow run by a process worker, by the ``agency-prefork``
worker, and called in a warm process with heartbeats off (the ceiling), alternating in rounds.

    python -m benchmarks.execution_throughput [--quick] [--runs N] [--limit L] [--webhooks N]
        [--per-event-webhooks N] [--server-workers W]

The Prefect server stores its data in PostgreSQL, like the issue's figures (on SQLite it
answers 503 "database is locked" under this load and clients sleep in retries); with
``--server-workers`` above 1 it runs as in production, several API processes and a services
process with messaging on Redis (the server is the bottleneck of prefork and in-process runs
on one process). Each round creates a batch of runs at once on one worker and waits until all
are terminal; worker logs stay in the temporary project directory, printed as ``# logs``.
Per mode it prints completed runs/s (runs / wall time of its batches), p50/p95 creation →
completed (flow run ``created`` → ``end_time``) and CPU-s per run (server + worker process tree
+ this process, read from /proc). Then ``benchmarks.webhook_execution``: signed webhooks through
the gateway to the 2-node ``event_archive`` on a prefork worker, per event and batched. Last
lines: ``prefork_vs_process`` and ``prefork_vs_inprocess`` (ratios of runs/s; goals ≥ 6 and
≥ 0.7), ``batch_events_per_s`` (goal ≥ 200) and ``lost`` (goal 0). Figures are noisy on a
shared machine: quote medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from benchmarks._prefect import prefect_server
from benchmarks._runs import (
    create_pools,
    percentile,
    server_pid,
    start_worker,
    stop_workers,
    tree_cpu,
)

FLOW_FILE = '''
"""The benchmark's 5-node flow: catalogued nodes, no I/O beyond the Prefect API."""

from prefect import flow

from nodes.log_message import LogMessageInput, log_message


@flow(name="bench-five-nodes")
def five_nodes(n: int = 0) -> int:
    for i in range(5):
        log_message(LogMessageInput(client="bench", message="step {{ i }} of run {{ n }}",
                                    level="debug", context={"i": i, "n": n}))
    return n
'''

#: Runs per batch whose state history is read for its phases (after the batch is timed).
PHASE_SAMPLE = 10

#: A batch's result: wall seconds, creation → end seconds of each completed run, and the median
#: seconds of a deployed run's phases (created → Pending "pickup", → Running "start", → end
#: "body") over ``PHASE_SAMPLE`` of them.
Batch = tuple[float, list[float], dict[str, float]]


async def _wait_terminal(ids: list[UUID], timeout: float) -> Batch:
    """Wait until every run is terminal; return when that was (``time.monotonic()``), the
    creation → end seconds of the completed ones and their phases. Each poll asks only for
    runs of the batch that are not yet known to be final, and only for final ones, so that
    watching costs the server little: it is the bottleneck being measured."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import TERMINAL_STATES

    deadline = time.monotonic() + timeout
    final = FlowRunFilterState(type=FlowRunFilterStateType(any_=list(TERMINAL_STATES)))
    pending, runs = set(ids), []
    async with get_client() as client:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} runs not finished after {timeout}s")
            await asyncio.sleep(0.25)
            ended = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(pending)), state=final),
                limit=len(pending),
            )
            runs += ended
            pending -= {r.id for r in ended}
        finished = time.monotonic()
        bad = [r.state for r in runs if r.state is not None and not r.state.is_completed()]
        if bad:
            print(f"# {len(bad)} runs did not complete: {bad[0]}", file=sys.stderr)
        done = [r for r in runs if r.end_time and r.created and r.state.is_completed()]
        phases: dict[str, list[float]] = {"pickup": [], "start": [], "body": []}
        for run in done[:PHASE_SAMPLE]:
            states = await client.read_flow_run_states(run.id)
            stamp = {st.type.value: st.timestamp for st in states}
            if {"PENDING", "RUNNING"} <= set(stamp):
                pending_at, running = stamp["PENDING"], stamp["RUNNING"]
                phases["pickup"].append((pending_at - run.created).total_seconds())
                phases["start"].append((running - pending_at).total_seconds())
                phases["body"].append((run.end_time - running).total_seconds())
    medians = {k: statistics.median(v) for k, v in phases.items() if v}
    return finished, [(r.end_time - r.created).total_seconds() for r in done], medians


async def _deployed_batch(deployment_id: UUID, size: int, offset: int) -> Batch:
    from prefect.client.orchestration import get_client

    start = time.monotonic()
    async with get_client() as client:
        # one request first: a new client asks for a CSRF token before its first write, and
        # every request of a burst sent before that answer would ask again
        create = client.create_flow_run_from_deployment
        first = await create(deployment_id, parameters={"n": offset})
        created = await asyncio.gather(
            *(create(deployment_id, parameters={"n": i}) for i in range(offset + 1, offset + size))
        )
        ids = [run.id for run in (first, *created)]
    finished, latencies, phases = await _wait_terminal(ids, timeout=60 + size * 10)
    return finished - start, latencies, phases


class Mode:
    """One way of running the flow, with the pids whose CPU it is charged."""

    def __init__(self, name: str, batch: Callable[[int, int], Batch]) -> None:
        self.name, self.batch = name, batch
        self.wall, self.cpu, self.runs = 0.0, 0.0, 0
        self.latencies: list[float] = []
        self.phases: list[dict[str, float]] = []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="8 runs per mode in 2 rounds")
    parser.add_argument("--runs", type=int, default=200, help="runs per mode (default 200)")
    parser.add_argument("--limit", type=int, default=4, help="worker concurrency limit")
    parser.add_argument(
        "--webhooks", type=int, default=None, help="webhooks per mode (default 2000; quick 100)"
    )
    parser.add_argument(
        "--per-event-webhooks",
        type=int,
        default=None,
        help="webhooks of the one-run-per-event mode (default: --webhooks)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="Prefect API processes; above 1, the production layout (separate services "
        "process, messaging on Redis) instead of one server process (default 1)",
    )
    args = parser.parse_args()
    webhooks = args.webhooks or (100 if args.quick else 2000)
    runs, rounds = (8, 2) if args.quick else (args.runs, 4)
    size = max(1, runs // rounds)

    project = Path(tempfile.mkdtemp(prefix="bench-exec-"))
    (project / "five_nodes.py").write_text(textwrap.dedent(FLOW_FILE))
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    os.environ["PREFECT_WORKER_PREFETCH_SECONDS"] = "1"
    print(f"# prefect server: {args.server_workers} API process(es)", flush=True)
    # the figures are on PostgreSQL
    with prefect_server(postgres=True, workers=args.server_workers):
        server = [pid] if (pid := server_pid()) else []
        from prefect import flow
        from prefect.context import SettingsContext

        from deployments.prefork.child import child_settings

        asyncio.run(create_pools({"bench-process": "process", "bench-prefork": "agency-prefork"}))
        source = flow.from_source(source=str(project), entrypoint="five_nodes.py:five_nodes")
        deployments = {
            pool: source.deploy(
                name=pool, work_pool_name=pool, build=False, push=False, print_next_steps=False
            )
            for pool in ("bench-process", "bench-prefork")
        }
        logs = {pool: project / f"{pool}.log" for pool in ("bench-process", "bench-prefork")}
        workers = {
            pool: start_worker(pool, kind, args.limit, logs[pool])
            for pool, kind in (("bench-process", "process"), ("bench-prefork", "agency-prefork"))
        }
        sys.path.insert(0, str(project))
        from five_nodes import five_nodes

        def in_process(n: int, offset: int) -> Batch:
            latencies = []
            start = time.monotonic()
            with SettingsContext(profile=SettingsContext.get().profile, settings=child_settings()):
                for i in range(offset, offset + n):
                    t0 = time.monotonic()
                    five_nodes(i)
                    latencies.append(time.monotonic() - t0)
            return time.monotonic() - start, latencies, {}

        def deployed(pool: str) -> Callable[[int, int], Batch]:
            return lambda n, offset: asyncio.run(_deployed_batch(deployments[pool], n, offset))

        modes = [
            Mode("process", deployed("bench-process")),
            Mode("prefork", deployed("bench-prefork")),
            Mode("inprocess", in_process),
        ]
        charged = {
            "process": [*server, workers["bench-process"].pid],
            "prefork": [*server, workers["bench-prefork"].pid],
            "inprocess": server,
        }
        try:
            for mode in modes:  # warm-up: worker start, template import, first API calls
                mode.batch(1, 10_000)
            for r in range(rounds):
                order = modes if r % 2 == 0 else list(reversed(modes))
                for mode in order:
                    before = sum(tree_cpu(p) for p in charged[mode.name]) + time.process_time()
                    wall, latencies, phases = mode.batch(size, r * size)
                    mode.phases.append(phases)
                    after = sum(tree_cpu(p) for p in charged[mode.name]) + time.process_time()
                    mode.wall += wall
                    mode.cpu += after - before
                    mode.runs += len(latencies)
                    mode.latencies += latencies
                    phases = " ".join(f"{k}={v:.2f}s" for k, v in mode.phases[-1].items())
                    print(f"# round {r} {mode.name}: {len(latencies)} runs in {wall:.1f}s {phases}")
        finally:
            stop_workers(workers.values())
        # another session editing the project's source makes the worker replace its template
        log = logs["bench-prefork"].read_text(errors="replace")
        print(f"prefork_template_replacements={log.count('Replacing prefork template')}")
        print(f"# logs {project}")
        rate = {}
        for mode in modes:
            rate[mode.name] = mode.runs / mode.wall if mode.wall else 0.0
            print(f"{mode.name}_runs_per_s={rate[mode.name]:.2f}")
            print(f"{mode.name}_p50_s={percentile(mode.latencies, 0.5):.3f}")
            print(f"{mode.name}_p95_s={percentile(mode.latencies, 0.95):.3f}")
            print(f"{mode.name}_cpu_s_per_run={mode.cpu / max(mode.runs, 1):.3f}", flush=True)
        from benchmarks.webhook_execution import webhook_modes

        hooks = webhook_modes(project, webhooks, per_event=args.per_event_webhooks)

    for mode, figures in hooks.items():
        for name, value in figures.items():
            print(f"webhook_{mode}_{name}={value:.2f}")
    print(f"prefork_vs_process={rate['prefork'] / max(rate['process'], 1e-9):.2f}")
    print(f"prefork_vs_inprocess={rate['prefork'] / max(rate['inprocess'], 1e-9):.2f}")
    print(f"batch_events_per_s={hooks['batched']['events_per_s']:.1f}")
    print(f"lost={int(sum(f['lost'] for f in hooks.values()))}")


if __name__ == "__main__":
    main()
