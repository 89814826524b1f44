"""Approvals and long delays suspend their run: the process ends, the worker slot is free.

A real Prefect server and a real ``agency-prefork`` worker (limit 4, its own pool) run flows made
of the real ``approve`` and ``delay`` nodes, deployed from a project directory. Side effects
(lines in a file written by a resumable task) show what ran, and how often. The delay threshold
is 5 s here (``AGENCY_DELAY_SUSPEND_SECONDS``) instead of the default 60 s, and the long delay
is 20 s instead of minutes, so the test stays short.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment

from agency.db import AuditLog, session_scope, upgrade
from agency.settings import Settings
from deployments import ensure_work_pool
from services import add_client, answer_approval, list_pending_approvals
from services.approvals import expire_approvals
from tests.fixtures._net import alive, stop_process

POOL = "agency-suspend-e2e"
LIMIT = 4
# the scale is 20 waiting and 10 others: SUSPEND_TEST_SCALE=20,10 (slower on 2 cores)
WAITING, OTHERS = (
    int(n) for n in os.environ.get("SUSPEND_TEST_SCALE", f"{2 * LIMIT},{LIMIT}").split(",")
)
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}

FLOWS = '''
"""Flows that wait: each writes a line per step to the file ``out``."""

from prefect import flow, task

from nodes import ApproveInput, DelayInput, approve, delay
from nodes._resume import resumable
from flows.spec.model import parse_spec
from flows.spec_runner import build_flow


@task
def mark(out: str, label: str) -> str:
    with open(out, "a") as handle:
        handle.write(label + "\\n")
    return label


step = resumable(mark)
ask = resumable(approve)
wait = resumable(delay)


@flow
def asks(client: str, out: str, timeout: int = 3600, on_timeout: str = "reject") -> str:
    step(out, "before")
    step(out, "before")  # the same call twice is two calls, each cached on its own
    answer = ask(
        ApproveInput(
            client=client, message="Send it?", timeout_seconds=timeout, on_timeout=on_timeout
        )
    )
    step(out, f"after:{answer.decision}")
    return answer.decision


@flow
def waits(client: str, out: str, seconds: float) -> float:
    step(out, "before")
    waited = wait(DelayInput(client=client, seconds=seconds))
    step(out, "after")
    return waited.waited_seconds


SPEC = """
name: spec-asks
version: 1.0.0
nodes:
  - {id: first, node: log_message, params: {message: "first"}}
  - {id: side, node: log_message, params: {message: "side branch"}}
  - {id: ask, node: approve, params: {message: "Go on?", timeout_seconds: 3600}}
  - {id: last, node: log_message, params: {message: "{{ nodes.ask.output.decision }}"}}
edges:
  - {from: first, to: ask}
  - {from: first, to: side}
  - {from: ask, to: last}
"""
specced = build_flow(parse_spec(SPEC)[0])


@flow
def quick(out: str) -> None:
    with open(out, "a") as handle:
        handle.write("done\\n")
'''


@pytest.fixture(scope="module")
def suspend_worker(
    prefect_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    """`prefect worker start --type agency-prefork --limit 4` on its own pool; (project, log)."""
    root = tmp_path_factory.mktemp("suspend")
    project = root / "project"
    project.mkdir()
    (project / "waiting.py").write_text(textwrap.dedent(FLOWS))
    ensure_work_pool(POOL, prefork=True)
    log_path = root / "worker.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start"]
        + ["--pool", POOL, "--type", "agency-prefork", "--limit", str(LIMIT)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AGENCY_DELAY_SUSPEND_SECONDS": "5"},
    )
    try:
        yield project, log_path
    finally:
        stop_process(proc, timeout=30)
        log.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'agency.db'}")
    upgrade(settings.platform_database_url)
    return settings


@pytest.fixture
def client(settings: Settings) -> str:
    slug = f"wait-{secrets.token_hex(3)}"
    add_client(settings, slug, slug)
    return slug


def _deploy(project: Path, function: str, pool: str = POOL) -> str:
    name = f"{function}-{uuid.uuid4().hex[:8]}"
    source = flow.from_source(source=str(project), entrypoint=f"waiting.py:{function}")
    source.deploy(
        name=name,
        work_pool_name=pool,
        build=False,
        push=False,
        job_variables={"preload": ["nodes"], "termination_grace_seconds": 5}
        if pool == POOL
        else {},
        print_next_steps=False,
    )
    return f"{source.name}/{name}"


def _start(deployment: str, tag: str | None = None, **parameters: Any) -> FlowRun:
    tags = [f"client:{tag}"] if tag else []
    return run_deployment(deployment, parameters=parameters, timeout=0, tags=tags)


def _wait(run_id: uuid.UUID, until: set[StateType], timeout: float = 180) -> FlowRun:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as api:
        while True:
            run = api.read_flow_run(run_id)
            if run.state is not None and run.state.type in until:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {run_id} still {run.state} after {timeout}s")
            time.sleep(0.3)


def _suspended(run_id: uuid.UUID, log: Path) -> FlowRun:
    run = _wait(run_id, {StateType.PAUSED} | TERMINAL)
    assert run.state is not None and run.state.name == "Suspended", log.read_text()[-3000:]
    return run


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.xdist_group("heavy")
def test_waiting_approvals_hold_no_slot_and_an_answer_resumes_without_rerunning(
    suspend_worker: tuple[Path, Path], settings: Settings, client: str, tmp_path: Path
) -> None:
    """More runs than the worker's limit wait for a reviewer while other runs still complete;
    an answered one continues after its approval, its first steps not run again."""
    project, log = suspend_worker
    asks, quick = _deploy(project, "asks"), _deploy(project, "quick")
    waiting = [
        _start(asks, client, client=client, out=str(tmp_path / f"ask{i}")) for i in range(WAITING)
    ]
    pids = [_suspended(run.id, log).infrastructure_pid for run in waiting]
    for pid in pids:
        assert pid and _gone(int(str(pid).rsplit(":", 1)[-1])), "a waiting run kept its process"
    others = [_start(quick, out=str(tmp_path / f"quick{i}")) for i in range(OTHERS)]
    for run in others:
        assert _wait(run.id, TERMINAL).state.type == StateType.COMPLETED  # type: ignore[union-attr]

    pending = {view.flow_run_id: view for view in list_pending_approvals(settings, client)}
    assert set(pending) == {str(run.id) for run in waiting}
    first = waiting[0]
    assert pending[str(first.id)].message == "Send it?"
    assert pending[str(first.id)].expires_at is not None
    answered_at = time.monotonic()
    answer_approval(settings, client, str(first.id), approved=True, actor="ops@agency")
    resumed = _wait(first.id, {StateType.RUNNING} | TERMINAL)
    started_after = time.monotonic() - answered_at
    done = _wait(first.id, TERMINAL)
    assert done.state is not None and done.state.type == StateType.COMPLETED, log.read_text()[
        -4000:
    ]
    assert resumed.infrastructure_pid != pids[0]  # a new process: the first one ended
    # the two steps before the approval ran once each, in the first process only
    assert _lines(tmp_path / "ask0") == ["before", "before", "after:approved"]
    for i in range(1, WAITING):
        assert _lines(tmp_path / f"ask{i}") == ["before", "before"]
    print(f"answer_to_running_seconds={started_after:.2f}")
    with get_client(sync_client=True) as api:
        for run in waiting[1:]:
            api.delete_flow_run(run.id)


def test_a_deadline_applies_the_policy_with_no_process_waiting(
    suspend_worker: tuple[Path, Path], settings: Settings, client: str, tmp_path: Path
) -> None:
    """The check answers expired requests; the resumed run applies on_timeout (approve here)."""
    project, log = suspend_worker
    out = tmp_path / "timeout"
    run = _start(_deploy(project, "asks"), client, client=client, out=str(out), timeout=3)
    pid = _suspended(run.id, log).infrastructure_pid
    assert pid and _gone(int(str(pid).rsplit(":", 1)[-1]))
    assert expire_approvals(settings, now=datetime.now(UTC) - timedelta(hours=1)) == 0
    time.sleep(3)
    assert expire_approvals(settings) >= 1
    done = _wait(run.id, TERMINAL)
    assert done.state is not None and done.state.type == StateType.COMPLETED, log.read_text()[
        -4000:
    ]
    assert _lines(out) == ["before", "before", "after:timed_out"]
    with session_scope(settings.platform_database_url) as session:
        actions = [row.action for row in session.query(AuditLog).filter_by(target=str(run.id))]
    assert actions == ["approval.timeout"]


def test_a_deadline_with_cancel_fails_the_run_before_its_next_step(
    suspend_worker: tuple[Path, Path], settings: Settings, client: str, tmp_path: Path
) -> None:
    project, log = suspend_worker
    out = tmp_path / "cancel"
    run = _start(
        _deploy(project, "asks"),
        client,
        client=client,
        out=str(out),
        timeout=2,
        on_timeout="cancel",
    )
    _suspended(run.id, log)
    time.sleep(2.5)
    assert expire_approvals(settings) >= 1
    done = _wait(run.id, TERMINAL)
    assert done.state is not None and done.state.type == StateType.FAILED, done.state
    assert _lines(out) == ["before", "before"]


def test_a_long_delay_frees_the_slot_and_resumes_on_time(
    suspend_worker: tuple[Path, Path], tmp_path: Path
) -> None:
    project, log = suspend_worker
    out = tmp_path / "delay"
    started = datetime.now(UTC)
    run = _start(_deploy(project, "waits"), None, client="acme", out=str(out), seconds=20)
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as api:
        waiting = api.read_flow_run(run.id)
        while waiting.state is None or waiting.state.name != "Delayed":
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert waiting.state is None or waiting.state.type not in TERMINAL, waiting.state
            time.sleep(0.3)
            waiting = api.read_flow_run(run.id)
    assert waiting.state.type == StateType.SCHEDULED
    due = waiting.state.state_details.scheduled_time
    assert due is not None and timedelta(seconds=15) < due - started < timedelta(seconds=30)
    assert waiting.infrastructure_pid
    assert _gone(int(str(waiting.infrastructure_pid).rsplit(":", 1)[-1]))
    assert _lines(out) == ["before"]
    done = _wait(run.id, TERMINAL, timeout=120)
    assert done.state is not None and done.state.type == StateType.COMPLETED, log.read_text()[
        -4000:
    ]
    assert _lines(out) == ["before", "after"]
    assert done.end_time is not None and done.end_time >= due
    # the second execution started at (not long after) the wake-up time
    assert done.end_time is not None and done.end_time - due < timedelta(seconds=30)


def test_a_spec_with_an_approval_suspends_and_resumes_from_its_persisted_nodes(
    suspend_worker: tuple[Path, Path], settings: Settings, client: str
) -> None:
    """The spec runner's approve node (run beside a concurrent branch) suspends the run too;
    resumed, the nodes that completed come from their persisted results."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    project, log = suspend_worker
    run = _start(_deploy(project, "specced"), client, client=client)
    pid = _suspended(run.id, log).infrastructure_pid
    assert pid and _gone(int(str(pid).rsplit(":", 1)[-1]))
    [view] = list_pending_approvals(settings, client)
    assert view.message == "Go on?" and view.node == "ask"
    answer_approval(settings, client, str(run.id), approved=False)
    done = _wait(run.id, TERMINAL)
    assert done.state is not None and done.state.type == StateType.COMPLETED, log.read_text()[
        -3000:
    ]
    with get_client(sync_client=True) as api:
        tasks = api.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
        )
    states = sorted((t.name, t.state.name) for t in tasks if t.state is not None)
    firsts = [name for task, name in states if task == "first"]
    assert firsts.count("Completed") == 1 and "Cached" in firsts, states
    assert [name for task, name in states if task == "last"] == ["Completed"], states


def test_the_process_worker_suspends_and_resumes_too(
    suspend_worker: tuple[Path, Path],
    prefect_worker: Any,
    settings: Settings,
    client: str,
    tmp_path: Path,
) -> None:
    """On Prefect's process worker the waiting run's process ends as well; answered, it
    continues in a new process without repeating its first steps."""
    project, _ = suspend_worker
    out = tmp_path / "process"
    deployment = _deploy(project, "asks", pool=prefect_worker.pool)
    run = _start(deployment, client, client=client, out=str(out))
    waiting = _wait(run.id, {StateType.PAUSED} | TERMINAL)
    assert waiting.state is not None and waiting.state.name == "Suspended", prefect_worker.log()
    pid = int(str(waiting.infrastructure_pid).rsplit(":", 1)[-1])
    assert _gone(pid)
    answer_approval(settings, client, str(run.id), approved=False)
    done = _wait(run.id, TERMINAL)
    assert done.state is not None and done.state.type == StateType.COMPLETED, done.state
    assert _lines(out) == ["before", "before", "after:rejected"]
