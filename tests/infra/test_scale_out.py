"""Scale-out: two workers on one work pool share a burst of runs, each run executes exactly once,
and the runs of a worker whose machine dies are crashed and rescheduled instead of lost.

Each run of ``scale_flows.record`` (deployed with ``flow.from_source`` on this directory) writes a
``start`` and an ``end`` row, with its worker's name and its pid, to a throwaway PostgreSQL
database, so executions are counted outside Prefect.

- The 200-run burst uses two ``agency-prefork`` workers: a process worker completes ~0.5 runs/s
  on a 2-core machine (a fresh Python and two Prefect imports per run), so 200 runs would take
  ~7 minutes; forked children start in milliseconds. Both worker types share ``BaseWorker``'s
  claim (Pending) step, where Prefect rejects the second claim of a run. The burst runs against
  its own ``prefect server start`` on PostgreSQL, production's backend: on the session server's
  SQLite, 2 x 10 concurrent runs made the server answer 503 (``database is locked``) and the
  workers then crashed runs at submission. Run logs stay in the worker log files (not shipped
  to the API: ~0.1 server CPU-s per run that the burst does not need to measure).
- The machine death kills two machines at once, each with a survivor on its pool: a
  ``process`` worker's and an ``agency-prefork`` worker's. Both kinds of runs send the flow-run
  heartbeats :mod:`deployments.recovery` needs: a process run through Prefect's engine, a prefork
  run through its worker. A process run is in its own session, so SIGKILL to its worker's process
  group leaves it going (checked here), and the machine is that group and every descendant,
  killed with SIGKILL. A prefork worker's template and children die with the worker process
  (checked here), so SIGKILL to the worker alone is a dead prefork machine.

Real parts: Prefect servers (the session's on SQLite, the burst's on PostgreSQL), PostgreSQL at
127.0.0.1:5432, worker processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import make_url

from deployments import ensure_work_pool
from deployments.prefork import PreforkWorker
from deployments.recovery import (
    CRASH_AUTOMATION,
    RESCHEDULE_AUTOMATION,
    SILENT_CRASH_MESSAGE,
    crash_recovery_automations,
    ensure_crash_recovery,
    remove_crash_recovery,
)
from tests.fixtures._net import alive, free_port, stop_process, wait_http
from tests.infra import scale_flows

# CPU-heavy and timed: under pytest-xdist (`make test`) the heavy tests share one worker, so
# they never overlap each other
pytestmark = pytest.mark.xdist_group("heavy")

HERE = Path(__file__).parent
BURST = 200
LIMIT = 6  # concurrent runs per prefork worker
HEARTBEAT = 30  # Prefect's minimum PREFECT_FLOWS_HEARTBEAT_FREQUENCY
SILENCE = timedelta(seconds=40)  # > HEARTBEAT: a live run's heartbeats come every 30 s
HOLD = 240.0  # at most this long, the machine-death test's runs wait for it to release them
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def _records_table(database_url: str) -> str:
    """Create the ``executions`` table in ``database_url``; return the database's libpq URL."""
    plain = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(scale_flows.TABLE)
    return plain


def _release(url: str) -> None:
    """Let the held runs (``scale_flows.record(held=True)``) end."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO releases DEFAULT VALUES")


def _rows(url: str) -> list[tuple[UUID, str, str, int]]:
    with psycopg.connect(url) as conn:
        query = "SELECT flow_run_id, phase, worker, pid FROM executions ORDER BY at"
        return [tuple(row) for row in conn.execute(query).fetchall()]  # type: ignore[misc]


def _deploy(pool: str, name: str) -> UUID:
    source = flow.from_source(source=str(HERE), entrypoint="scale_flows.py:record")
    deployment_id = source.deploy(
        name=name,
        work_pool_name=pool,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )
    return UUID(str(deployment_id))


async def _create_runs(deployment_id: UUID, parameters: dict[str, object], n: int) -> list[UUID]:
    # a few at a time: one server process answers them all
    gate = asyncio.Semaphore(4)
    async with get_client() as client:

        async def one() -> UUID:
            async with gate:
                run = await client.create_flow_run_from_deployment(
                    deployment_id, parameters=parameters
                )
                return run.id

        return list(await asyncio.gather(*(one() for _ in range(n))))


def _read_runs(ids: list[UUID]) -> list[FlowRun]:
    runs: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        for i in range(0, len(ids), 100):
            chunk = FlowRunFilter(id=FlowRunFilterId(any_=ids[i : i + 100]))
            runs += client.read_flow_runs(flow_run_filter=chunk, limit=100)
    return runs


def _histories(runs: list[FlowRun]) -> dict[str, list[str]]:
    with get_client(sync_client=True) as client:
        return {
            str(r.id): [f"{s.name} {s.timestamp:%X}" for s in client.read_flow_run_states(r.id)]
            for r in runs
            if r.state is None or r.state.type not in FINAL
        }


def _wait_final(ids: list[UUID], timeout: float) -> list[FlowRun]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _read_runs(ids)
        if len(runs) == len(ids) and all(r.state and r.state.type in FINAL for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs not final after {timeout:.0f}s: {_histories(runs)}")
        time.sleep(1)


def _start_worker(
    pool: str, kind: str, name: str, limit: int, log_dir: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`prefect worker start` in its own session (its process group is its "machine")."""
    log = open(log_dir / f"worker-{name}.log", "wb")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
            + ["--type", kind, "--limit", str(limit), "--name", f"{pool}-{name}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AGENCY_SCALE_WORKER": name, **(env or {})},
            start_new_session=True,
        )
    finally:
        log.close()


def _wait_online(pool: str, names: list[str], timeout: float = 90) -> None:
    """Until each worker has sent its first heartbeat (it polls the pool from then on)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            seen = {w.name for w in client.read_workers_for_work_pool(pool)}
            if {f"{pool}-{name}" for name in names} <= seen:
                return
            assert time.monotonic() < deadline, f"workers {names} not online on {pool}: {seen}"
            time.sleep(0.3)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _heartbeats_seen(ids: list[UUID]) -> set[str]:
    """Resource ids of the runs among ``ids`` whose heartbeat the server has recorded."""
    wanted = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{i}" for i in ids]),
    )
    with get_client(sync_client=True) as client:
        return {event.resource.id for event in client.read_events(wanted, limit=50).events}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; stopped (or reaped) afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        stop_process(proc, timeout=20)


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("worker-*.log"))


@contextmanager
def _prefect_on_postgresql(database_url: str, log_dir: Path) -> Iterator[str]:
    """`prefect server start` on ``database_url``; the test's Prefect client points at it."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(log_dir / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url.replace(
            "postgresql+psycopg", "postgresql+asyncpg"
        ),
    }
    log = open(log_dir / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        + ["--port", str(port), "--no-ui"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"{api}/health", timeout=120, proc=server)
        with temporary_settings(updates={PREFECT_API_URL: api}):
            yield api
    finally:
        stop_process(server, timeout=20)
        log.close()


@pytest.mark.timeout(420)
def test_burst_of_200_runs_on_two_workers_executes_each_run_exactly_once(
    postgresql_database_url: str, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    pool = "agency-scale-burst"
    records = _records_table(postgresql_database_url)
    template = PreforkWorker.get_default_base_job_template()
    # the flow needs Prefect and psycopg only: the template preloads just that
    template["variables"]["properties"]["preload"]["default"] = ["psycopg"]
    with _prefect_on_postgresql(postgresql_database_url, tmp_path) as api:
        with get_client(sync_client=True) as client:
            # paused while the runs are created: the workers then find all 200 at once
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool, type=PreforkWorker.type, base_job_template=template, is_paused=True
                )
            )
        deployment_id = _deploy(pool, "burst")
        env = {"PREFECT_API_URL": api, "PREFECT_LOGGING_TO_API_ENABLED": "false"}
        for name in ("A", "B"):
            workers.append(_start_worker(pool, PreforkWorker.type, name, LIMIT, tmp_path, env))
        _wait_online(pool, ["A", "B"])

        started = time.monotonic()
        ids = asyncio.run(_create_runs(deployment_id, {"database_url": records}, BURST))
        created = time.monotonic() - started
        with get_client(sync_client=True) as client:
            client.update_work_pool(pool, WorkPoolUpdate(is_paused=False))
        released = time.monotonic()
        deadline = released + 300
        while sum(phase == "end" for _, phase, _, _ in _rows(records)) < BURST:
            if time.monotonic() > deadline:
                break  # the checks below say which runs are missing
            time.sleep(1)
        runs = _wait_final(ids, timeout=30)
        executed = time.monotonic() - released
        for proc in workers:  # while their server is still up
            stop_process(proc, timeout=20)

    not_completed = [r for r in runs if r.state is None or r.state.type != StateType.COMPLETED]
    assert not not_completed, ([r.state for r in not_completed[:3]], _logs(tmp_path))
    assert all(r.run_count == 1 for r in runs)
    rows = _rows(records)
    per_run = Counter((run_id, phase) for run_id, phase, _, _ in rows)
    assert {run_id for run_id, *_ in rows} == set(ids)
    assert all(per_run[(run_id, phase)] == 1 for run_id in ids for phase in ("start", "end"))
    by_worker = Counter(worker for _, phase, worker, _ in rows if phase == "start")
    assert set(by_worker) == {"A", "B"}, by_worker
    print(
        f"\n{BURST} runs created in {created:.1f}s, executed in {executed:.1f}s "
        f"({BURST / executed:.1f} runs/s), per worker {dict(by_worker)}"
    )


def _prefork_pool(name: str, preload: list[str]) -> None:
    """An ``agency-prefork`` pool whose template preloads just ``preload``."""
    template = PreforkWorker.get_default_base_job_template()
    template["variables"]["properties"]["preload"]["default"] = preload
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=name, type=PreforkWorker.type, base_job_template=template),
            overwrite=True,
        )


def _wait_started(url: str, ids: list[UUID], timeout: float, logs: Path) -> None:
    """Until each run wrote its start row and the server has seen its first heartbeat (a run
    that dies before that stays Running)."""
    deadline = time.monotonic() + timeout
    while not set(ids) <= {r[0] for r in _rows(url) if r[1] == "start"} or len(
        _heartbeats_seen(ids)
    ) < len(ids):
        assert time.monotonic() < deadline, _logs(logs)
        time.sleep(0.3)


def _executing(url: str, ids: list[UUID], worker: str, n: int) -> dict[UUID, int]:
    """The ``n`` runs among ``ids`` that ``worker`` started and has not ended, with their pids."""
    rows = [r for r in _rows(url) if r[0] in ids]
    ended = {run_id for run_id, phase, _, _ in rows if phase == "end"}
    mine = {run_id: pid for run_id, phase, name, pid in rows if phase == "start" and name == worker}
    assert len(mine) == n, rows
    assert not ended & set(mine), "the doomed runs ended before the kill"
    return mine


def _gone_within(pids: set[int], timeout: float) -> set[int]:
    """The processes among ``pids`` still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := {pid for pid in pids if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.timeout(360)
def test_runs_of_a_dead_worker_machine_are_crashed_and_rescheduled(
    prefect_server: str,
    postgresql_database_url: str,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    pool, prefork_pool = "agency-scale-crash", "agency-scale-crash-prefork"
    records = _records_table(postgresql_database_url)
    ensure_work_pool(pool)
    _prefork_pool(prefork_pool, ["psycopg"])
    deployment_id = _deploy(pool, "crash")
    prefork_deployment_id = _deploy(prefork_pool, "crash-prefork")
    automations = ensure_crash_recovery(silence=SILENCE, reschedules=1)
    assert ensure_crash_recovery(silence=SILENCE, reschedules=1) == automations  # updated
    try:
        heartbeat = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT)}
        for name in ("A", "B"):  # --limit 2: each runs two of the process pool's four runs
            workers.append(_start_worker(pool, "process", name, 2, tmp_path, heartbeat))
        for name in ("C", "D"):  # --limit 1: each runs one of the prefork pool's two runs
            workers.append(
                _start_worker(prefork_pool, PreforkWorker.type, name, 1, tmp_path, heartbeat)
            )
        doomed, _, doomed_prefork, _ = workers
        _wait_online(pool, ["A", "B"])
        _wait_online(prefork_pool, ["C", "D"])
        # held: no run ends before both machines are dead (a loaded CI machine once started
        # the last process run over 25 s after the first, which had ended by then)
        parameters = {"database_url": records, "seconds": HOLD, "held": True}
        ids = asyncio.run(_create_runs(deployment_id, parameters, 4))
        _wait_started(records, ids, 90, tmp_path)
        doomed_runs = _executing(records, ids, "A", 2)

        # process worker: SIGKILL to its process group alone leaves its runs executing
        machine = _descendants(doomed.pid)
        assert set(doomed_runs.values()) <= machine
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        assert all(alive(pid) for pid in doomed_runs.values())
        for pid in machine:  # the rest of the machine goes too
            _kill(pid)
        killed = time.monotonic()

        # prefork worker, a few seconds later (its runs start in milliseconds, the process
        # runs' within ~10 s of each other): its template and child die with it
        prefork_ids = asyncio.run(_create_runs(prefork_deployment_id, parameters, 2))
        _wait_started(records, prefork_ids, 30, tmp_path)
        doomed_prefork_runs = _executing(records, prefork_ids, "C", 1)
        prefork_machine = _descendants(doomed_prefork.pid)
        assert set(doomed_prefork_runs.values()) < prefork_machine  # the template is there too
        doomed_prefork.kill()
        doomed_prefork.wait()
        assert not _gone_within(prefork_machine, timeout=5), "the prefork worker's children live"
        ids += prefork_ids
        doomed_runs |= doomed_prefork_runs
        _release(records)  # the survivors' runs end; the rescheduled ones end once they start

        runs = {r.id: r for r in _wait_final(ids, timeout=SILENCE.total_seconds() + 90)}
        recovered = time.monotonic() - killed
    finally:
        _release(records)  # again, for when the test failed before: no run waits out HOLD
        remove_crash_recovery()

    assert all(r.state and r.state.type == StateType.COMPLETED for r in runs.values()), (
        runs,
        _logs(tmp_path),
    )
    rows = _rows(records)
    with get_client(sync_client=True) as client:
        for run_id in ids:
            run_rows = [(phase, worker) for rid, phase, worker, _ in rows if rid == run_id]
            history = [(s.type, s.name, s.message) for s in client.read_flow_run_states(run_id)]
            dead, survivor = ("C", "D") if run_id in prefork_ids else ("A", "B")
            if run_id in doomed_runs:
                assert run_rows == [("start", dead), ("start", survivor), ("end", survivor)], (
                    run_rows
                )
                assert runs[run_id].run_count == 2
                assert (StateType.CRASHED, "Crashed", SILENT_CRASH_MESSAGE) in history, history
                names = [name for _, name, _ in history]
                assert names.index("Crashed") < names.index("AwaitingRetry") < len(names) - 1
            else:
                assert run_rows == [("start", survivor), ("end", survivor)], run_rows
                assert runs[run_id].run_count == 1
                assert StateType.CRASHED not in [t for t, _, _ in history]
    print(f"\nrecovered {len(doomed_runs)} runs {recovered:.1f}s after the first machine died")


def test_crash_recovery_automations_are_replaced_by_name_and_removable(prefect_server: str) -> None:
    def names() -> list[str]:
        with get_client(sync_client=True) as client:
            return sorted(a.name for a in client.read_automations(limit=50))

    try:
        ensure_crash_recovery()
        ensure_crash_recovery(reschedules=2)
        assert names().count(CRASH_AUTOMATION) == names().count(RESCHEDULE_AUTOMATION) == 1
        ensure_crash_recovery(reschedules=0)
        assert CRASH_AUTOMATION in names() and RESCHEDULE_AUTOMATION not in names()
    finally:
        remove_crash_recovery()
    assert CRASH_AUTOMATION not in names()
    with pytest.raises(ValueError, match="reschedules"):
        crash_recovery_automations(reschedules=-1)
