"""The ``agency-prefork`` worker against a real Prefect server and a real worker process.

Each test deploys a small flow from the fixture's project directory (``flow.from_source`` with a
``set_working_directory`` pull step) to the prefork pool and watches the run through the API.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.events import Event
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.flow_runs import suspend_flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Cancelled, Cancelling
from prefect.workers.base import BaseWorker
from pydantic import ValidationError

from deployments.prefork import PreforkWorker
from deployments.prefork.heartbeat import Heartbeats, heartbeat_seconds
from tests.fixtures._net import alive, stop_process
from tests.fixtures.prefork import PreforkWorkerProcess

PRELOAD = ["flows.catalog", "prefork_helper"]
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def _deploy(
    worker: PreforkWorkerProcess, function: str, pool: str | None = None, **job_variables: object
) -> str:
    name = f"{function}-{uuid.uuid4().hex[:8]}"
    source = flow.from_source(source=str(worker.project), entrypoint=f"runs.py:{function}")
    source.deploy(
        name=name,
        work_pool_name=pool or worker.pool,
        build=False,
        push=False,
        job_variables={"preload": PRELOAD, "termination_grace_seconds": 5, **job_variables},
        print_next_steps=False,
    )
    return f"{source.name}/{name}"


def _start(deployment: str, **parameters: object) -> FlowRun:
    return run_deployment(deployment, parameters=parameters, timeout=0)


def _wait(run_id: uuid.UUID, until: set[StateType], timeout: float = 120) -> FlowRun:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.type in until:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {run_id} still {run.state} after {timeout}s")
            time.sleep(0.3)


def _remember(worker: PreforkWorkerProcess, deployment: str, value: str, out: Path) -> dict:
    run = _wait(_start(deployment, value=value, out=str(out)).id, TERMINAL)
    assert run.state is not None and run.state.type == StateType.COMPLETED, worker.log()[-3000:]
    seen = json.loads(out.read_text())
    assert str(seen["pid"]) == str(run.infrastructure_pid)
    return seen


def _running_pid(run_id: uuid.UUID) -> int:
    run = _wait(run_id, {StateType.RUNNING} | TERMINAL)
    assert run.state is not None and run.state.type == StateType.RUNNING
    assert run.infrastructure_pid
    return int(run.infrastructure_pid)


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _heartbeats(run_id: uuid.UUID) -> list[Event]:
    """The ``prefect.flow-run.heartbeat`` events the server has recorded for the run."""
    wanted = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    with get_client(sync_client=True) as client:
        return client.read_events(wanted, limit=50).events


def _settled_heartbeats(run_id: uuid.UUID, at_least: int, timeout: float = 30) -> list[Event]:
    """The run's heartbeats once at least ``at_least`` arrived and none came for 2 s more."""
    deadline = time.monotonic() + timeout
    while len(events := _heartbeats(run_id)) < at_least:
        assert time.monotonic() < deadline, f"{len(events)} heartbeats of {run_id}"
        time.sleep(0.3)
    time.sleep(2)
    return _heartbeats(run_id)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_worker_type_is_discoverable_with_a_base_job_template() -> None:
    assert BaseWorker.get_worker_class_from_type("agency-prefork") is PreforkWorker
    template = PreforkWorker.get_default_base_job_template()
    assert {"preload", "working_dir", "env"} <= set(template["variables"]["properties"])


def test_run_completes_in_its_own_child_in_the_deployment_directory(
    prefork_worker: PreforkWorkerProcess, tmp_path: Path
) -> None:
    deployment = _deploy(prefork_worker, "remember")
    seen = _remember(prefork_worker, deployment, "x", tmp_path / "out.json")
    assert seen["pid"] != os.getpid()
    assert Path(seen["cwd"]).resolve() == prefork_worker.project.resolve()


def test_the_engine_reads_what_the_worker_already_had_from_the_workers_snapshot(
    prefork_worker: PreforkWorkerProcess, tmp_path: Path
) -> None:
    """The child answers the engine's first read of the flow run (whose parameters reach the
    flow), the deployment and the server's result storage setting from the records the worker
    handed it, instead of asking the server again (the flow, work pool and queue are read
    later, for the first event a task emits)."""
    deployment = _deploy(prefork_worker, "report_reads")
    out = tmp_path / "answered.json"
    run = _wait(_start(deployment, out=str(out)).id, TERMINAL)
    assert run.state is not None and run.state.type == StateType.COMPLETED, prefork_worker.log()
    answered = json.loads(out.read_text())
    assert answered.count(f"/flow_runs/{run.id}") == 1
    assert {f"/deployments/{run.deployment_id}", "/admin/storage"} <= set(answered)


def test_module_state_of_one_run_is_not_seen_by_the_next(
    prefork_worker: PreforkWorkerProcess, tmp_path: Path
) -> None:
    deployment = _deploy(prefork_worker, "remember")
    first = _remember(prefork_worker, deployment, "client-a-secret", tmp_path / "a.json")
    second = _remember(prefork_worker, deployment, "client-b", tmp_path / "b.json")
    assert second["previous"] is None
    assert first["pid"] != second["pid"]


def test_sigkilled_child_crashes_its_run_and_the_worker_keeps_serving(
    prefork_worker: PreforkWorkerProcess, tmp_path: Path
) -> None:
    sleepy, remember = _deploy(prefork_worker, "sleepy"), _deploy(prefork_worker, "remember")
    run = _start(sleepy, seconds=120)
    os.kill(_running_pid(run.id), signal.SIGKILL)
    crashed = _wait(run.id, TERMINAL)
    assert crashed.state is not None and crashed.state.type == StateType.CRASHED
    _remember(prefork_worker, remember, "after", tmp_path / "after.json")


def test_cancelled_run_has_its_child_terminated(prefork_worker: PreforkWorkerProcess) -> None:
    deployment = _deploy(prefork_worker, "sleepy")
    run = _start(deployment, seconds=120)
    pid = _running_pid(run.id)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    cancelled = _wait(run.id, TERMINAL, timeout=60)
    assert cancelled.state is not None and cancelled.state.type == StateType.CANCELLED
    assert _gone(pid), f"child {pid} still alive"


def test_a_run_suspended_from_outside_stops_its_child_at_the_next_task(
    prefork_worker: PreforkWorkerProcess, tmp_path: Path
) -> None:
    """Suspending a running flow run (here from another process, as the UI or an automation
    would) ends its child at the next task, leaving the run Suspended to be resumed later."""
    deployment = _deploy(prefork_worker, "ticking")
    out = tmp_path / "ticks"
    run = _start(deployment, out=str(out), n=300)
    try:
        pid = _running_pid(run.id)
        deadline = time.monotonic() + 30
        while not out.exists() or len(out.read_text().split()) < 3:
            assert time.monotonic() < deadline, prefork_worker.log()[-3000:]
            time.sleep(0.1)
        suspend_flow_run(flow_run_id=run.id, timeout=600)
        assert _gone(pid, timeout=20), "the suspended run's child is still running"
        state = _wait(run.id, {StateType.PAUSED} | TERMINAL).state
        assert state is not None and state.name == "Suspended", state
        ticks = len(out.read_text().split())
        time.sleep(1)
        assert len(out.read_text().split()) == ticks < 300
    finally:
        with get_client(sync_client=True) as client:
            client.delete_flow_run(run.id)


def test_code_change_is_picked_up_without_restarting_the_worker(
    prefork_worker: PreforkWorkerProcess, tmp_path: Path
) -> None:
    deployment = _deploy(prefork_worker, "remember")
    before = _remember(prefork_worker, deployment, "v1", tmp_path / "v1.json")
    version = before["version"] + 1
    prefork_worker.write_helper(version)  # preloaded: only a new template can see it
    runs = prefork_worker.project / "runs.py"
    runs.write_text(runs.read_text().replace("FLOW_VERSION = 1\n", "FLOW_VERSION = 22\n"))
    after = _remember(prefork_worker, deployment, "v2", tmp_path / "v2.json")
    assert (after["version"], after["flow_version"]) == (version, 22)
    assert "Replacing prefork template" in prefork_worker.log()


@pytest.mark.parametrize("name", ["PreforkWorker", "PreforkJobConfiguration", "PreforkVariables"])
def test_package_exports(name: str) -> None:
    import deployments.prefork

    assert name in deployments.prefork.__all__


def test_template_refuses_to_fork_after_a_preloaded_module_started_a_thread(
    tmp_path: Path,
) -> None:
    (tmp_path / "threaded.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True)"
        ".start()\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "deployments.prefork.template", "threaded"],
        input=b"",
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}"},
    )
    assert done.returncode == 1
    assert "refusing to fork" in json.loads(done.stdout)["error"]


def test_heartbeat_frequency_is_the_runs_setting_else_the_workers() -> None:
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 45}):
        assert heartbeat_seconds({}) == 45
        assert heartbeat_seconds({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"}) == 60
        assert heartbeat_seconds({"PREFECT_RUNNER_HEARTBEAT_FREQUENCY": "90"}) == 90
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        assert heartbeat_seconds({}) is None
    with pytest.raises(ValidationError, match="greater than or equal to 30"):
        heartbeat_seconds({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "5"})


def test_heartbeats_follow_running_at_their_interval_until_stopped(prefect_server: str) -> None:
    @flow(name="heartbeat-probe")
    def probe() -> None:
        """Never runs: only its flow run is needed."""

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(probe, tags=["probe"])
        api_flow = client.read_flow(run.flow_id)
    interval = 0.3  # Prefect's setting cannot go below 30 s; the worker passes the setting

    async def beat() -> float:
        beats = Heartbeats()
        beats.expect(run.id, api_flow, interval)
        assert beats.waiting == [run.id]
        beats.start(run)
        started = time.monotonic()
        assert beats.waiting == []
        await asyncio.sleep(1.0)
        beats.stop(run.id)
        stopped = time.monotonic()
        await asyncio.sleep(3 * interval)  # nothing more after stop
        return stopped - started

    elapsed = asyncio.run(beat())
    events = _settled_heartbeats(run.id, at_least=3)
    assert 3 <= len(events) <= 1 + elapsed / interval, (len(events), elapsed)
    event = events[0]
    assert event.resource["prefect.resource.name"] == run.name
    # Prefect's events client may add resources of another run context of this test process
    # (seen after earlier in-process flows), so look for ours among them
    flows = {(r.id, r["prefect.resource.name"]) for r in event.related if r.role == "flow"}
    assert (f"prefect.flow.{run.flow_id}", "heartbeat-probe") in flows, flows
    assert "prefect.tag.probe" in {r.id for r in event.related if r.role == "tag"}
    with pytest.raises(ValueError, match="interval"):
        Heartbeats().expect(run.id, api_flow, 0)


def test_the_worker_sends_one_heartbeat_once_the_run_is_running(
    prefork_worker: PreforkWorkerProcess,
) -> None:
    # the session worker's frequency is Prefect's default (180 s): a 4 s run gets one heartbeat
    # (the child's engine would send another one if its own heartbeats were on)
    deployment = _deploy(prefork_worker, "sleepy")
    run = _start(deployment, seconds=4)
    _running_pid(run.id)
    [event] = _settled_heartbeats(run.id, at_least=1)
    done = _wait(run.id, TERMINAL)
    assert done.state is not None and done.state.type == StateType.COMPLETED
    assert len(_heartbeats(run.id)) == 1
    with get_client(sync_client=True) as client:
        running = next(
            s for s in client.read_flow_run_states(run.id) if s.type == StateType.RUNNING
        )
    assert event.occurred >= running.timestamp  # else Running would answer it (see heartbeat.py)
    assert event.resource["prefect.resource.name"] == done.name
    related = {r.role: r.id for r in event.related}
    assert related["flow"] == f"prefect.flow.{done.flow_id}"
    assert related["deployment"] == f"prefect.deployment.{done.deployment_id}"


def test_a_stopped_worker_lets_its_children_finish_a_killed_one_takes_them_along(
    prefork_worker: PreforkWorkerProcess, tmp_path: Path
) -> None:
    pool = "agency-prefork-orphans"
    template = PreforkWorker.get_default_base_job_template()
    template["variables"]["properties"]["preload"]["default"] = []  # one light template
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=pool, type=PreforkWorker.type, base_job_template=template),
            overwrite=True,
        )
    deployment = _deploy(prefork_worker, "sleepy", pool=pool, preload=[])
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
            + ["--type", PreforkWorker.type, "--limit", "2"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    long, short = _start(deployment, seconds=120), _start(deployment, seconds=5)
    try:
        child, _ = _running_pid(long.id), _running_pid(short.id)
        forkserver = _parent(child)
        assert _parent(forkserver) == worker.pid

        worker.terminate()  # a graceful stop: no new runs, running ones finish
        finished = _wait(short.id, TERMINAL, timeout=30)
        assert finished.state is not None and finished.state.type == StateType.COMPLETED
        assert worker.poll() is None and alive(child) and alive(forkserver)

        worker.kill()
        worker.wait()
        assert _gone(child, timeout=5), f"child {child} outlived its worker"
        assert _gone(forkserver, timeout=5), f"template {forkserver} outlived its worker"
    finally:
        stop_process(worker)
        with get_client(sync_client=True) as client:  # the run stays Running: nobody is left
            client.set_flow_run_state(long.id, Cancelled(), force=True)


def test_a_poll_asks_for_no_more_scheduled_runs_than_the_worker_can_start(
    prefect_server: str, tmp_path: Path
) -> None:
    """Prefect's poll lists every scheduled run of the pool (up to 200 full records), and this
    worker polls after each run it finishes: with a backlog, it asks for its free slots only."""
    pool = f"poll-{uuid.uuid4().hex[:8]}"
    (tmp_path / "idle.py").write_text("from prefect import flow\n\n\n@flow\ndef idle(): ...\n")

    async def scenario() -> tuple[list[uuid.UUID], list[uuid.UUID], list[uuid.UUID]]:
        async with get_client() as client:
            template = PreforkWorker.get_default_base_job_template()
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type=PreforkWorker.type, base_job_template=template)
            )
            source = await flow.from_source(source=str(tmp_path), entrypoint="idle.py:idle")
            deployment = await source.deploy(
                name=pool, work_pool_name=pool, build=False, push=False, print_next_steps=False
            )
            created = [
                (await client.create_flow_run_from_deployment(deployment)).id for _ in range(5)
            ]
        polled = {}
        for limit in (2, None):
            async with PreforkWorker(work_pool_name=pool, limit=limit) as worker:
                polled[limit] = [r.flow_run.id for r in await worker._get_scheduled_flow_runs()]
        return created, polled[2], polled[None]

    created, limited, unlimited = asyncio.run(scenario())
    # Prefect's own poll goes through the method this worker overrides
    assert "self._get_scheduled_flow_runs()" in inspect.getsource(
        BaseWorker.get_and_submit_flow_runs
    )
    assert limited == created[:2]  # the next two to start, in the order Prefect would pick
    assert sorted(unlimited) == sorted(created)  # no limit: Prefect's own poll
