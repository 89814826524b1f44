"""The ``agency-prefork`` worker against a real Prefect server and a real worker process.

Each test deploys a small flow from the fixture's project directory (``flow.from_source`` with a
``set_working_directory`` pull step) to the prefork pool and watches the run through the API.
"""

from __future__ import annotations

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
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from deployments.prefork import PreforkWorker
from tests.fixtures.prefork import PreforkWorkerProcess

PRELOAD = ["flows.catalog", "prefork_helper"]
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def _deploy(worker: PreforkWorkerProcess, function: str) -> str:
    name = f"{function}-{uuid.uuid4().hex[:8]}"
    source = flow.from_source(source=str(worker.project), entrypoint=f"runs.py:{function}")
    source.deploy(
        name=name,
        work_pool_name=worker.pool,
        build=False,
        push=False,
        job_variables={"preload": PRELOAD, "termination_grace_seconds": 5},
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


def test_worker_type_is_discoverable_with_a_base_job_template() -> None:
    from prefect.workers.base import BaseWorker

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
