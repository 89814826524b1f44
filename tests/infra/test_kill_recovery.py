"""Kill test: signed webhooks stream in while the gateway, the outbox dispatcher and the prefork
worker are all killed with SIGKILL mid-stream and restarted; every accepted event still ends in
exactly one COMPLETED flow run, and the runs the dead worker left Pending or Running are crashed
and rescheduled by :mod:`deployments.recovery` within two minutes.

Real parts: the session's Prefect server (with the crash-recovery automations as the platform
installs them: 30 s heartbeats, 90 s silence, 60 s Pending window), the platform DB on
PostgreSQL, and real processes: ``agency gateway --no-dispatcher``, ``agency dispatcher`` and
``agency worker`` (which turns heartbeats on by itself: the test does not set them). The sender
behaves like a webhook sender: it retries an event, with the same delivery id, until the gateway
answers 202 (or 200, a duplicate of an accepted one); an event is accepted once it has a delivery
id.

The workflow (written into a project directory of the test) sleeps 1 s while its module is
imported, so each run spends that long claimed (Pending) before it runs, then 1.5 s Running: when
the processes are killed, the worker holds runs in both states. Each execution writes a start
and an end line to a file beside the flow, so executions are counted outside Prefect. No fixed
sleep decides anything: every wait polls for its condition under a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from pydantic import BaseModel

from agency.db import upgrade
from agency.settings import Settings
from deployments.prefork import PreforkWorker
from deployments.recovery import (
    HEARTBEAT_SECONDS,
    SILENT_CRASH_MESSAGE,
    STUCK_PENDING_MESSAGE,
    ensure_crash_recovery,
    remove_crash_recovery,
)
from flows.manifest import WorkflowManifest
from services import activate, add_client
from services.webhooks import enable_webhook
from tests.fixtures._net import alive, free_port, stop_process, wait_http
from tests.fixtures.gateway import ChildProcess, Hook, platform_env
from tests.gateway.test_reliability import outbox, wait_all_dispatched
from tests.gateway.test_verifiers import signed

# CPU-heavy and timed: under pytest-xdist (`make test`) the heavy tests share one worker, so
# they never overlap each other
pytestmark = pytest.mark.xdist_group("heavy")

COUNT = int(os.environ.get("AGENCY_TEST_KILL_COUNT", "60"))
LIMIT = 8  # concurrent runs of the worker
PACE = 0.15  # seconds between two new events of the sender
POOL = "agency-kill-tests"
WORKFLOW = "kill_echo"
RECOVERY_LIMIT = 120.0  # seconds: a stranded run must be rescheduled within this of the kill
IN_FLIGHT_AT_KILL = 4  # the kill waits (up to a deadline) until the worker holds this many runs

KILL_FLOWS = '''
"""The kill test's workflow: records each execution's start and end in the project."""

import os
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

time.sleep(1)  # a slow import: each run stays claimed (Pending) this long before Running

LOG = Path("__LOG__")  # the project's folder: runs execute a release copy of this file


def _record(phase: str, n: object) -> None:
    with open(LOG, "a") as out:  # one short append per line: lines never interleave
        out.write(f"{phase} {n} {flow_run.id} {os.getpid()} {time.time():.3f}\\n")


@flow(name="kill_echo")
def kill_echo(client: str, settings: dict | None = None, event: dict | None = None) -> int:
    n = (event or {}).get("n")
    _record("start", n)
    time.sleep(1.5)
    _record("end", n)
    return int(n)
'''


class _NoSettings(BaseModel):
    """Nothing to fill in."""


MANIFEST = WorkflowManifest(
    slug=WORKFLOW,
    title="Kill echo",
    description="Test-only: sleeps, records its execution, returns its event's number.",
    version="1.0.0",
    entrypoint="kill_flows.py:kill_echo",
    settings_model=_NoSettings,
    triggers=("webhook",),
)


@dataclass
class Stream:
    """What the sender saw: accepted events (event number -> delivery id) and every answer."""

    accepted: dict[int, str] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    rejected: list[str] = field(default_factory=list)
    sent_first: threading.Event = field(default_factory=threading.Event)
    killing: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


async def _send(url: str, hook: Hook, count: int, stream: Stream, give_up: float) -> None:
    """Send events 0..count-1, a new one every ``PACE`` s; retry each (same delivery id, fresh
    signature) on connection errors and 5xx until accepted or ``give_up`` (monotonic). After the
    first third, wait until ``stream.killing`` is set: the rest is sent while the processes die
    and restart, whatever the machine's speed."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def one(i: int) -> None:
            body = json.dumps({"n": i}).encode()
            while time.monotonic() < give_up:
                headers = signed(hook.verifier, hook.secret, body, msg_id=f"kill_{i}")
                headers["content-type"] = "application/json"
                try:
                    answer = await http.post(hook.path, content=body, headers=headers)
                except httpx.HTTPError:
                    stream.answers["no answer"] += 1
                    await asyncio.sleep(0.5)
                    continue
                stream.answers[str(answer.status_code)] += 1
                if answer.status_code in (200, 202):
                    stream.accepted[i] = answer.json()["delivery_id"]
                    return
                if answer.status_code < 500:
                    stream.rejected.append(f"{i}: {answer.status_code} {answer.text}")
                    return
                await asyncio.sleep(0.5)

        tasks = []
        for i in range(count):
            if i == count // 3:
                stream.sent_first.set()
                while not stream.killing.is_set() and time.monotonic() < give_up:
                    await asyncio.sleep(0.05)
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(PACE)
        await asyncio.gather(*tasks)


def _start_sender(url: str, hook: Hook, count: int, give_up: float) -> Stream:
    stream = Stream()

    def run() -> None:
        try:
            asyncio.run(_send(url, hook, count, stream, give_up))
        finally:
            stream.done.set()

    threading.Thread(target=run, daemon=True).start()
    return stream


def _runs(deployment_id: Any, states: list[StateType] | None = None) -> list[FlowRun]:
    """The deployment's runs (in ``states`` if given), all pages."""
    state_filter = (
        FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)))
        if states
        else None
    )
    runs: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                flow_run_filter=state_filter,
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _worker_online() -> bool:
    with get_client(sync_client=True) as client:
        return bool(client.read_workers_for_work_pool(POOL))


def _wait(condition: Any, timeout: float, what: str, step: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f}s"
        time.sleep(step)


@dataclass
class Worker:
    """``agency worker`` in a session of its own; restartable."""

    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        env = {k: v for k, v in os.environ.items() if "HEARTBEAT_FREQUENCY" not in k}
        env["PREFECT_LOGGING_TO_API_ENABLED"] = "false"  # run logs stay in its log file
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker", "--pool", POOL]
                + ["--limit", str(LIMIT)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, timeout=30)


@dataclass
class Platform:
    """The processes under test and what they work on."""

    settings: Settings
    hook: Hook
    deployment_id: Any
    project: Path
    url: str
    gateway: ChildProcess
    dispatcher: ChildProcess
    worker: Worker
    logs: Path

    def tail(self) -> str:
        logs = sorted(self.logs.glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


@pytest.fixture
def platform(
    tmp_path: Path,
    postgresql_database_url: str,
    prefect_server: str,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Platform]:
    """Gateway, dispatcher and prefork worker processes on a PostgreSQL platform DB, one client
    with the webhook workflow activated, and the crash-recovery automations installed."""
    from flows import catalog

    monkeypatch.setitem(catalog.WORKFLOWS, MANIFEST.slug, MANIFEST)
    project, logs = tmp_path / "project", tmp_path / "logs"
    project.mkdir()
    logs.mkdir()
    flows_text = textwrap.dedent(KILL_FLOWS).replace("__LOG__", str(project / "executions.log"))
    (project / "kill_flows.py").write_text(flows_text)
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgresql_database_url,
        work_pool=POOL,
        project_dir=project,
    )
    upgrade(settings.platform_database_url)
    template = PreforkWorker.get_default_base_job_template()
    template["variables"]["properties"]["preload"]["default"] = []  # the flow needs Prefect only
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=POOL, type=PreforkWorker.type, base_job_template=template),
            overwrite=True,
        )
    add_client(settings, client_slug, client_slug)
    activate(settings, client_slug, WORKFLOW, {}, None)
    view = enable_webhook(settings, client_slug, WORKFLOW, rate_limit_per_hour=10**6)
    hook = Hook(client_slug, WORKFLOW, "standard", view.secret, f"/hooks/{client_slug}/{WORKFLOW}")
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(f"{WORKFLOW}/{client_slug}").id
    # as the platform installs them: the installing process has the workers' heartbeat setting
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}):
        ensure_crash_recovery()

    port = free_port()
    env = platform_env(settings)
    gateway_args = ["gateway", "--host", "127.0.0.1", "--port", str(port), "--no-dispatcher"]
    gateway = ChildProcess(gateway_args, env, logs / "gateway.log")
    dispatch_args = ["dispatcher", "--lease-seconds", "10", "--concurrency", "3"]
    dispatcher = ChildProcess(dispatch_args, env, logs / "dispatcher.log")
    worker = Worker(logs / "worker.log")
    running = Platform(
        settings,
        hook,
        deployment_id,
        project,
        f"http://127.0.0.1:{port}",
        gateway,
        dispatcher,
        worker,
        logs,
    )
    try:
        yield running
    finally:
        for proc in (worker, dispatcher, gateway):
            proc.stop()
        remove_crash_recovery()


def _start_front(p: Platform) -> None:
    """Gateway and dispatcher; returns once the gateway answers."""
    p.gateway.start()
    p.dispatcher.start()
    wait_http(f"{p.url}/healthz", timeout=90, proc=p.gateway.proc)


def _executions(project: Path) -> tuple[Counter[int], Counter[int]]:
    """Starts and ends per event number, from the flow's own records."""
    starts: Counter[int] = Counter()
    ends: Counter[int] = Counter()
    log = project / "executions.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        phase, n, *_ = line.split()
        (starts if phase == "start" else ends)[int(n)] += 1
    return starts, ends


@pytest.mark.timeout(480)
def test_kill_gateway_dispatcher_and_worker_mid_stream_every_event_completes_once(
    platform: Platform,
) -> None:
    p = platform
    began = time.monotonic()
    p.worker.start()
    _start_front(p)
    _wait(_worker_online, 90, "the worker online")
    stream = _start_sender(p.url, p.hook, COUNT, give_up=time.monotonic() + 300)

    # mid-stream: the first third of the events sent, the worker holding several runs
    assert stream.sent_first.wait(timeout=120), stream.answers
    in_flight: list[FlowRun] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(in_flight) < IN_FLIGHT_AT_KILL:
        in_flight = _runs(p.deployment_id, [StateType.PENDING, StateType.RUNNING])
        time.sleep(0.1)
    stream.killing.set()

    assert p.worker.proc is not None and p.gateway.proc and p.dispatcher.proc
    machine = _descendants(p.worker.proc.pid)  # its warm template and forked children
    for proc in (p.worker.proc, p.dispatcher.proc, p.gateway.proc):
        os.kill(proc.pid, signal.SIGKILL)
    killed, killed_at = time.monotonic(), datetime.now(UTC)
    accepted_at_kill = len(stream.accepted)
    for proc in (p.worker.proc, p.dispatcher.proc, p.gateway.proc):
        proc.wait()
    _wait(lambda: not any(alive(pid) for pid in machine), 10, "the worker's children gone", 0.1)
    _start_front(p)
    # no worker runs them, nor will the next one (it takes Scheduled runs only): whatever is
    # Pending or Running now is stranded
    flying = _runs(p.deployment_id, [StateType.PENDING, StateType.RUNNING])
    stranded = {r.id: r.state.type for r in flying if r.state is not None}
    p.worker.start()
    restarted = time.monotonic()
    assert stream.done.wait(timeout=180), f"sender not done: {stream.answers}"
    assert not stream.rejected, stream.rejected
    assert len(stream.accepted) == COUNT, (stream.answers, p.tail())
    accepted = set(stream.accepted.values())
    wait_all_dispatched(p.settings, COUNT, stall=90)

    def all_completed() -> bool:
        runs = _runs(p.deployment_id)
        done = [r for r in runs if r.state and r.state.type == StateType.COMPLETED]
        return len(done) >= COUNT

    deadline = killed + RECOVERY_LIMIT + 120
    while not all_completed():
        if time.monotonic() > deadline:
            break  # the checks below say what is missing
        time.sleep(1)
    finished = time.monotonic()

    runs = _runs(p.deployment_id)
    by_key = Counter(r.idempotency_key for r in runs)
    completed = [r for r in runs if r.state and r.state.type == StateType.COMPLETED]
    left = [r for r in runs if r.state is None or r.state.type != StateType.COMPLETED]
    duplicates = sum(n - 1 for n in by_key.values())
    starts, ends = _executions(p.project)

    recovered: dict[Any, float] = {}
    with get_client(sync_client=True) as client:
        histories = {run_id: client.read_flow_run_states(run_id) for run_id in stranded}
    for run_id, history in histories.items():
        retry = [s for s in history if s.name == "AwaitingRetry" and s.timestamp >= killed_at]
        if retry:
            recovered[run_id] = (retry[0].timestamp - killed_at).total_seconds()
    slowest = max(recovered.values(), default=0.0)
    kinds = Counter(t.value for t in stranded.values())
    print(
        f"\nkill test: {COUNT} events sent, {len(accepted)} accepted "
        f"({accepted_at_kill} before the kill; answers {dict(stream.answers)}); "
        f"{len(runs)} runs, {len(completed)} completed, {duplicates} duplicates, "
        f"{len(left)} stranded at the end; at the kill {len(stranded)} stranded "
        f"({dict(kinds)}), rescheduled {sorted(round(s, 1) for s in recovered.values())} s "
        f"after the kill (slowest {slowest:.1f} s, restart took {restarted - killed:.1f} s); "
        f"executions: {sum(starts.values())} started, {sum(ends.values())} ended; all "
        f"completed {finished - killed:.1f} s after the kill; test {finished - began:.0f} s"
    )

    # every accepted event: one delivery, one run, COMPLETED; no run without an event
    assert set(outbox(p.settings)) == accepted
    assert set(by_key) == accepted and duplicates == 0, by_key.most_common(3)
    assert not left, ([(r.id, r.state) for r in left[:5]], p.tail())
    assert len(completed) == COUNT
    # the flow's own records: each event ended exactly once (a stranded Running run started
    # twice: it was killed, then ran again from the start)
    assert set(ends) == set(range(COUNT)) and set(ends.values()) == {1}, ends
    assert sum(starts.values()) - COUNT <= len(stranded)
    # the kill stranded runs, and the automations rescheduled each within two minutes
    assert stranded, "the kill caught no run in flight: nothing was recovered"
    missing = set(stranded) - set(recovered)
    assert not missing, {r: histories[r] for r in missing}
    for run_id, history in histories.items():
        crash = [s for s in history if s.type == StateType.CRASHED and s.timestamp >= killed_at]
        expected = STUCK_PENDING_MESSAGE
        if stranded[run_id] == StateType.RUNNING:
            expected = SILENT_CRASH_MESSAGE
        assert crash and crash[0].message == expected, history
    assert slowest < RECOVERY_LIMIT, recovered
