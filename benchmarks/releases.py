"""Releases: how long making one takes, what one costs on disk, and what a new release's first
run costs on the prefork worker against a run from its warm template.

    python -m benchmarks.releases [--quick] [--creations N] [--warm N]

Works on a throwaway ``git clone`` of this repository (its last commit, so the release is made
from a clean commit) with a private platform home and a throwaway Prefect server (SQLite):

1. ``services.releases.create_release(settings, "event_archive")`` is timed ``--creations``
   times (10; 3 with ``--quick``), each but the first after a one-line commit to
   ``flows/event_archive.py`` so each makes a new release; wall seconds of the call, first and
   median.
2. Bytes of one release's folder in the local release store (``<home>/releases/<digest>``):
   apparent size and disk usage (allocated blocks, like ``du``) of the first, what the second
   release of the same workflow adds to the store (a release is a full copy), the store after
   all, and a release's disk usage after runs imported it (Python writes bytecode caches into
   the release folder; the worker runs without ``PYTHONDONTWRITEBYTECODE``).
3. Two clients pinned to the last two releases, on an ``agency worker --limit 4`` (prefork)
   worker polling every second: one run each alternately, ``--warm`` + 1 times (5 + 1; 2 + 1
   with ``--quick``), each after the previous completed; seconds from the flow run's creation
   to its COMPLETED state (server timestamps). The first run of each release starts its
   template (release ``a``'s is also the worker's first run); the others fork from it
   (median). Figures include up to a second of polling.

Last line (the headline): ``release_create_median_s``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any
from uuid import UUID

from benchmarks._prefect import prefect_server
from benchmarks._runs import create_pools, start_agency_worker, stop_workers

PROJECT_DIR = Path(__file__).resolve().parent.parent
WORKFLOW = "event_archive"
ENTRY_FILE = "flows/event_archive.py"
POOL = "bench-releases"


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b.test", "-C", str(project), *args],
        check=True,
        capture_output=True,
    )


def _disk(path: Path) -> tuple[int, int]:
    """Apparent bytes of the files under ``path`` and its disk usage (allocated blocks)."""
    apparent = used = 0
    for entry in [path, *path.rglob("*")]:
        info = entry.lstat()
        used += info.st_blocks * 512
        if entry.is_file():
            apparent += info.st_size
    return apparent, used


def _commit(project: Path, n: int) -> None:
    """A one-line change to the workflow's module, committed: the next release is new."""
    with (project / ENTRY_FILE).open("a") as handle:
        handle.write(f"# benchmark release {n}\n")
    _git(project, "commit", "-q", "-am", f"benchmark release {n}")


def _create(settings: Any, project: Path, count: int) -> dict[str, Any]:
    """Make ``count`` releases, committing between them; the releases, the wall seconds of
    each creation and the store's disk usage after each."""
    from services.releases import create_release

    made, seconds, store = [], [], []
    for n in range(count):
        if n:
            _commit(project, n)
        started = time.perf_counter()
        release = create_release(settings, WORKFLOW)
        seconds.append(time.perf_counter() - started)
        if release.seconds is None:
            raise RuntimeError(f"creation {n} found an existing release {release.short}")
        made.append(release)
        store.append(_disk(settings.releases_dir)[1])
    return {"made": made, "seconds": seconds, "store": store}


def _wait_log(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker log lacks {text!r} after {timeout}s (see {log})")
        time.sleep(0.5)


def _timed_run(deployment_id: UUID) -> float:
    """Run once and wait; seconds from the run's creation to its COMPLETED state."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as api:
        run = api.create_flow_run_from_deployment(deployment_id)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = api.read_flow_run(run.id)
            if found.state is not None and found.state.is_final():
                break
            time.sleep(0.1)
    if found.state is None or not found.state.is_completed():
        raise RuntimeError(f"flow run {run.id} ended {found.state}")
    return (found.state.timestamp - found.created).total_seconds()


def _prefork(settings: Any, releases: list[Any], warm: int, work: Path) -> dict[str, Any]:
    """First and warm run seconds of two clients pinned to two releases, side by side."""
    import asyncio

    from services import activate, add_client

    asyncio.run(create_pools({POOL: "agency-prefork"}))
    deployments = {}
    for name, release in zip("ab", releases, strict=True):
        add_client(settings, f"bench-{name}", f"Bench {name}")
        with redirect_stdout(io.StringIO()):  # Prefect's table of deployments
            view = activate(settings, f"bench-{name}", WORKFLOW, {}, None, release=release.short)
        deployments[name] = UUID(str(view.deployment_id))
    log = work / "worker.log"
    # from the clone, so the bytecode caches its default template writes stay there; Python's
    # default, so runs write bytecode caches (into the release folder)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {
        "AGENCY_HOME": str(settings.home),
        "AGENCY_DATABASE_URL": settings.platform_database_url,
    }
    worker = start_agency_worker(POOL, 4, log, project=settings.project_dir, env=env)
    try:
        _wait_log(log, "ready (pid", 120)  # the pool's default template, warmed at start
        time.sleep(2)
        runs: dict[str, list[float]] = {"a": [], "b": []}
        for _ in range(warm + 1):
            for name in "ab":
                runs[name].append(_timed_run(deployments[name]))
        text = log.read_text(errors="replace")
    finally:
        stop_workers([worker])
    for release in releases:
        if f"of release {release.short}" not in text:
            raise RuntimeError(f"no template of release {release.short} in {log}")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 creations, 2 warm runs")
    parser.add_argument("--creations", type=int, default=None, help="releases timed (10)")
    parser.add_argument("--warm", type=int, default=None, help="warm runs per release (5)")
    args = parser.parse_args()
    creations = max(2, args.creations or (3 if args.quick else 10))
    warm = args.warm or (2 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="bench-releases-") as tmp, prefect_server():
        from agency.db import upgrade
        from agency.settings import Settings

        work = Path(tmp)
        project = work / "project"
        subprocess.run(["git", "clone", "-q", str(PROJECT_DIR), str(project)], check=True)

        home = work / "home"
        os.environ["AGENCY_HOME"] = str(home)
        settings = Settings(home=home, project_dir=project, work_pool=POOL)
        upgrade(settings.platform_database_url)
        created = _create(settings, project, creations)
        made, seconds, store = created["made"], created["seconds"], created["store"]
        apparent, used = _disk(settings.releases_dir / made[0].digest)
        runs = _prefork(settings, made[-2:], warm, work)
        after_runs = _disk(settings.releases_dir / made[-2].digest)[1]

        print(f"workflow={WORKFLOW}")
        print(f"release_files={made[0].files}")
        print(f"release_bytes={apparent}")
        print(f"release_disk_bytes={used}")
        print(f"second_release_adds_disk_bytes={store[1] - store[0]}")
        print(f"store_disk_bytes_{len(made)}_releases={store[-1]}")
        print(f"release_disk_bytes_after_runs={after_runs}")
        for name, release in zip("ab", made[-2:], strict=True):
            first, rest = runs[name][0], runs[name][1:]
            print(f"prefork_release_{name}={release.short}")
            print(f"prefork_first_run_s_{name}={first:.2f}")
            print(f"prefork_warm_run_median_s_{name}={statistics.median(rest):.2f}")
            print(f"prefork_warm_runs_s_{name}={','.join(f'{s:.2f}' for s in rest)}")
        print(f"releases_created={len(seconds)}")
        print(f"release_create_first_s={seconds[0]:.2f}")
        print(f"release_create_max_s={max(seconds):.2f}")
        print(f"release_create_median_s={statistics.median(seconds):.2f}")


if __name__ == "__main__":
    main()
