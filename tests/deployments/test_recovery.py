"""Crash recovery (:mod:`deployments.recovery`) against the session's real Prefect server: a
claimed run whose worker never starts it, and a started run that never sends a heartbeat, are
crashed and rescheduled by the automations; runs that move on in time, and runs of no
deployment, are left alone. ``agency worker`` turns heartbeats on unless told otherwise.

The runs are driven through the states a worker and a flow engine would set (Pending, Submitting,
Running), by this process: the test plays a worker that dies right after each step. The kill test
with real processes is ``tests/infra/test_kill_recovery.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.events import emit_event
from prefect.events.schemas.events import ResourceSpecification
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, Pending, Running, Submitting

from deployments import ensure_work_pool
from deployments.recovery import (
    CRASH_AUTOMATION,
    DEFAULT_PENDING,
    HEARTBEAT_SECONDS,
    PENDING_AUTOMATION,
    RESCHEDULE_AUTOMATION,
    SILENT_CRASH_MESSAGE,
    STUCK_PENDING_MESSAGE,
    crash_recovery_automations,
    ensure_crash_recovery,
    remove_crash_recovery,
)

POOL = "agency-recovery-tests"  # no worker polls it: the test plays the (dying) worker
WINDOW = timedelta(seconds=12)  # silence and pending window (Prefect's minimum: 10 s)


@flow(name="recovery-noop")
def noop() -> None:
    """Never executed: the test only moves its runs through states."""


def test_automations_cover_pending_and_running_runs_of_deployments() -> None:
    crash, pending, reschedule = crash_recovery_automations()
    assert [a.name for a in (crash, pending, reschedule)] == [
        CRASH_AUTOMATION,
        PENDING_AUTOMATION,
        RESCHEDULE_AUTOMATION,
    ]
    assert crash.trigger.after == {"prefect.flow-run.heartbeat", "prefect.flow-run.Running"}
    assert crash.trigger.within == timedelta(minutes=9)  # three heartbeats at Prefect's 180 s
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}):
        assert crash_recovery_automations()[0].trigger.within == timedelta(seconds=90)
    assert pending.trigger.after >= {"prefect.flow-run.Pending", "prefect.flow-run.Submitting"}
    assert pending.trigger.within == DEFAULT_PENDING
    # a child's pull-step events do not count as the claimed run's progress, heartbeats do
    assert pending.trigger.match["prefect.state-type"] == ["*"]
    assert "prefect.state-type" not in crash.trigger.match
    for automation in (crash, pending):
        assert automation.trigger.expect == {"prefect.flow-run.*"}
        related = automation.trigger.match_related
        assert related == ResourceSpecification({"prefect.resource.role": "deployment"})
    match = reschedule.trigger.match
    assert match["prefect.state-message"] == [SILENT_CRASH_MESSAGE, STUCK_PENDING_MESSAGE]
    assert match["prefect.run-count"] == ["0", "1"]
    assert [a.name for a in crash_recovery_automations(reschedules=0)] == [
        CRASH_AUTOMATION,
        PENDING_AUTOMATION,
    ]
    with pytest.raises(ValueError, match="10 seconds"):
        crash_recovery_automations(pending=timedelta(seconds=5))


@pytest.fixture
def deployment_id(prefect_server: str, tmp_path: Path) -> Iterator[UUID]:
    """A deployment of ``noop`` on a pool no worker polls, with the automations installed
    (``silence`` and ``pending`` both :data:`WINDOW`); removed afterwards."""
    ensure_work_pool(POOL)
    (tmp_path / "noop_flow.py").write_text(
        "from prefect import flow\n\n\n@flow(name='recovery-noop')\ndef noop() -> None:\n    pass\n"
    )
    source = flow.from_source(source=str(tmp_path), entrypoint="noop_flow.py:noop")
    deployed = source.deploy(
        name="recovery",
        work_pool_name=POOL,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )
    ensure_crash_recovery(silence=WINDOW, pending=WINDOW, reschedules=1)
    try:
        yield UUID(str(deployed))
    finally:
        remove_crash_recovery()


def _history(client: SyncPrefectClient, run_id: UUID) -> list[tuple[str, str | None, Any]]:
    return [(s.name or "", s.message, s.timestamp) for s in client.read_flow_run_states(run_id)]


def _set(client: SyncPrefectClient, run_id: UUID, state: Any) -> None:
    result = client.set_flow_run_state(run_id, state)
    assert result.state is not None and result.state.name == state.name, result


@pytest.mark.timeout(180)
def test_abandoned_pending_and_silent_running_runs_are_crashed_and_rescheduled(
    deployment_id: UUID,
) -> None:
    with get_client(sync_client=True) as client:
        runs = {
            name: client.create_flow_run_from_deployment(deployment_id).id
            for name in ("claimed", "submitting", "started", "finished")
        }
        # a worker claims (Pending) and dies; another also proposes Submitting, and its child
        # runs the deployment's pull steps (they send events of the run), then both die
        _set(client, runs["claimed"], Pending())
        _set(client, runs["submitting"], Pending())
        _set(client, runs["submitting"], Submitting())
        emit_event(
            "prefect.flow-run.pull-step.executed",
            resource={"prefect.resource.id": f"prefect.flow-run.{runs['submitting']}"},
            related=[
                {
                    "prefect.resource.id": f"prefect.deployment.{deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            ],
        )
        EventsWorker.drain_all(timeout=10)
        # an engine enters Running and dies before its first heartbeat
        _set(client, runs["started"], Pending())
        _set(client, runs["started"], Running())
        # a healthy run: each step follows the previous one within the window
        _set(client, runs["finished"], Pending())
        _set(client, runs["finished"], Running())
        _set(client, runs["finished"], Completed())
        # a run of no deployment (``agency spec run``: a flow called in a process of its own)
        # that sends no heartbeat: left Running, the automations are for deployment runs
        adhoc = client.create_flow_run(noop, state=Pending()).id
        _set(client, adhoc, Running())
        left = time.monotonic()

        expected = {
            "claimed": STUCK_PENDING_MESSAGE,
            "submitting": STUCK_PENDING_MESSAGE,
            "started": SILENT_CRASH_MESSAGE,
        }
        deadline = left + WINDOW.total_seconds() + 90
        rescheduled: dict[str, float] = {}
        while len(rescheduled) < len(expected):
            for name in expected.keys() - rescheduled.keys():
                state = client.read_flow_run(runs[name]).state
                if state is not None and state.name == "AwaitingRetry":
                    rescheduled[name] = time.monotonic() - left
            assert time.monotonic() < deadline, {n: _history(client, runs[n]) for n in expected}
            time.sleep(0.5)

        for name, message in expected.items():
            history = _history(client, runs[name])
            names = [n for n, _, _ in history]
            # a slow server may apply the reschedule twice (AwaitingRetry -> AwaitingRetry):
            # harmless, the run is scheduled once; compare the distinct steps
            steps = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
            assert steps[-2:] == ["Crashed", "AwaitingRetry"], history
            crashed = max(i for i, n in enumerate(names) if n == "Crashed")
            assert history[crashed][1] == message
            run = client.read_flow_run(runs[name])
            assert run.state is not None and run.state.type == StateType.SCHEDULED
            assert run.run_count == (1 if name == "started" else 0)
        finished = _history(client, runs["finished"])
        assert [n for n, _, _ in finished][-1] == "Completed"
        assert "Crashed" not in [n for n, _, _ in finished]
        adhoc_state = client.read_flow_run(adhoc).state
        assert adhoc_state is not None and adhoc_state.type == StateType.RUNNING
        client.set_flow_run_state(adhoc, Completed())
    print(
        f"\nrescheduled after (s, window {WINDOW.total_seconds():.0f}): "
        + ", ".join(f"{n} {s:.1f}" for n, s in sorted(rescheduled.items()))
    )


def test_ensure_replaces_by_name_and_remove_deletes_all(prefect_server: str) -> None:
    def names() -> list[str]:
        with get_client(sync_client=True) as client:
            return sorted(a.name for a in client.read_automations(limit=50))

    try:
        first = ensure_crash_recovery()
        assert ensure_crash_recovery(pending=timedelta(seconds=90)) == first
        assert names().count(PENDING_AUTOMATION) == 1
        ensure_crash_recovery(reschedules=0)
        assert {CRASH_AUTOMATION, PENDING_AUTOMATION} <= set(names())
        assert RESCHEDULE_AUTOMATION not in names()
    finally:
        remove_crash_recovery()
    assert not {CRASH_AUTOMATION, PENDING_AUTOMATION, RESCHEDULE_AUTOMATION} & set(names())


class _Exec(Exception):
    """Raised instead of ``os.execv``: the command line and environment it would have run."""


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, str(HEARTBEAT_SECONDS)),
        ({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"}, "60"),
        ({"PREFECT_RUNNER_HEARTBEAT_FREQUENCY": "90"}, None),  # the alias wins, left alone
    ],
)
def test_agency_worker_turns_heartbeats_on_unless_set(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], expected: str | None
) -> None:
    import deployments
    from cli.commands import worker

    heartbeat = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")
    environ = {k: v for k, v in os.environ.items() if k not in heartbeat} | given
    monkeypatch.setattr(os, "environ", environ)
    monkeypatch.setattr(deployments, "ensure_work_pool", lambda *a, **k: None)

    def execv(path: str, args: list[str]) -> None:
        raise _Exec(args)

    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(_Exec) as started:
        worker.worker_cmd(pool="some-pool", limit=2, poll_seconds=1.0)
    assert started.value.args[0][-4:] == ["--type", "agency-prefork", "--limit", "2"]
    assert environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") == expected
