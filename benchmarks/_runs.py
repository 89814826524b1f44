"""Helpers of the benchmarks that run deployed flows on workers: pools, worker processes, CPU
time read from /proc, percentiles."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / _TICKS


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        todo.extend(int(c) for c in children)
    return pids


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants, live or reaped."""
    # a live process's reaped children are in its own figure; live ones are added here
    return sum(_cpu(p) for p in process_tree(pid))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def server_pid() -> int | None:
    """The throwaway server's pid: this process's only child (None with BENCH_PREFECT_API_URL).

    Call it right after ``prefect_server()`` starts, before any worker."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    return int(children[-1]) if children else None


async def create_pools(pools: dict[str, str]) -> None:
    """Create work pools, ``{name: worker type}``; ``agency-prefork`` gets its job template."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from deployments.prefork import PreforkWorker

    async with get_client() as client:
        for name, kind in pools.items():
            template = (
                PreforkWorker.get_default_base_job_template() if kind == PreforkWorker.type else {}
            )
            await client.create_work_pool(
                WorkPoolCreate(name=name, type=kind, base_job_template=template)
            )


def start_worker(pool: str, kind: str, limit: int, log: Path) -> subprocess.Popen[bytes]:
    """``prefect worker start`` of type ``kind`` on ``pool``, logging at INFO to ``log``.

    The project root (the current directory) is on the worker's ``PYTHONPATH`` so that it and
    its flow runs import ``nodes``, ``flows`` and ``deployments``."""
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
        + ["--type", kind, "--limit", str(limit)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path.cwd()), "PREFECT_LOGGING_LEVEL": "INFO"},
    )


def start_agency_worker(
    pool: str,
    limit: int,
    log: Path,
    *,
    project: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``agency worker --pool POOL --limit LIMIT`` (the prefork worker as the product runs it,
    polling every second) started in ``project`` (default: the current directory, the project
    root) with ``project`` on its ``PYTHONPATH``, logging at INFO to ``log``; ``env`` replaces
    the environment it inherits."""
    project = project or Path.cwd()
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--pool", pool, "--limit", str(limit)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=project,
        env={
            **(os.environ if env is None else env),
            "PYTHONPATH": str(project),
            "PREFECT_LOGGING_LEVEL": "INFO",
        },
    )


def stop_workers(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """Terminate the workers (their runs' children with them), killing any that hang."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        proc.kill()  # a no-op once it has exited
