"""Crash recovery for flow runs whose machine died: two Prefect automations, nothing home-made.

A worker that stays up reports its own runs Crashed when their process dies. When the whole
machine (or container, or pod) dies, nobody does: the runs stay Running forever. Prefect's flow
engine emits a ``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds (180 by default, 30 at least) while a run executes; for a run forked by an
``agency-prefork`` worker, the worker emits them (:mod:`deployments.prefork.heartbeat`), and its
children die with it. :func:`ensure_crash_recovery` installs, on the Prefect server:

1. **"agency: crash silent flow runs"**, a proactive trigger (Prefect's documented zombie-run
   automation): after a run's heartbeat, any event of that run (``prefect.flow-run.*``: the next
   heartbeat or a state change) is expected within ``silence``; if none comes, the run is set
   Crashed with :data:`SILENT_CRASH_MESSAGE`.
2. **"agency: reschedule silent-crashed flow runs"**, a reactive trigger on the Crashed events
   that carry that message and a run count of at most ``reschedules``: the run is set
   ``Scheduled`` named ``AwaitingRetry``, so any live worker on its pool runs it again (Prefect
   allows leaving Crashed for Scheduled when the run has a deployment). Runs whose process died
   under a live worker keep the worker's own Crashed message and are not rescheduled: such a
   crash may be the run's own fault (out of memory), and would repeat.

A rescheduled run starts again from the beginning: runs are retried at least once, not resumed.
Both automations need the server's triggers and actions services (``prefect server start``, or
``prefect server services start`` when API replicas run ``--no-services``).

Example::

    from deployments.recovery import ensure_crash_recovery

    ensure_crash_recovery()  # idempotent: run it once the server is healthy
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.settings import get_current_settings

__all__ = [
    "CRASH_AUTOMATION",
    "RESCHEDULE_AUTOMATION",
    "SILENT_CRASH_MESSAGE",
    "crash_recovery_automations",
    "ensure_crash_recovery",
    "remove_crash_recovery",
]

CRASH_AUTOMATION = "agency: crash silent flow runs"
RESCHEDULE_AUTOMATION = "agency: reschedule silent-crashed flow runs"
#: The Crashed state's message; the reschedule automation matches on it, exactly.
SILENT_CRASH_MESSAGE = "No heartbeat from this flow run: the machine running it is presumed dead."
#: Heartbeats that may be missed before a run counts as dead (Prefect Cloud's managed
#: "unresponsive run detection" waits 9 minutes at the default 180 s frequency).
MISSED_HEARTBEATS = 3


def _default_silence() -> timedelta:
    frequency = get_current_settings().flows.heartbeat_frequency or 180
    return timedelta(seconds=MISSED_HEARTBEATS * frequency)


def crash_recovery_automations(
    silence: timedelta | None = None, reschedules: int = 1
) -> list[AutomationCore]:
    """The two automations, unsaved. ``silence`` must exceed the workers' heartbeat frequency
    (default: three heartbeats at this process's ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``);
    ``reschedules`` bounds how often one run is rescheduled (0: crash only)."""
    if reschedules < 0:
        raise ValueError("reschedules must be 0 or more")
    crash = AutomationCore(
        name=CRASH_AUTOMATION,
        description="Marks Running flow runs Crashed when their heartbeats stop.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=silence or _default_silence(),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=SILENT_CRASH_MESSAGE)],
    )
    automations = [crash]
    if reschedules:
        counts = [str(n) for n in range(1, reschedules + 1)]
        automations.append(
            AutomationCore(
                name=RESCHEDULE_AUTOMATION,
                description="Reschedules flow runs crashed for missing heartbeats.",
                trigger=EventTrigger(
                    expect={"prefect.flow-run.Crashed"},
                    match=ResourceSpecification(
                        {
                            "prefect.resource.id": "prefect.flow-run.*",
                            "prefect.state-message": SILENT_CRASH_MESSAGE,
                            "prefect.run-count": counts,
                        }
                    ),
                    for_each={"prefect.resource.id"},
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                ),
                actions=[
                    ChangeFlowRunState(
                        state=StateType.SCHEDULED,
                        name="AwaitingRetry",
                        message="Rescheduled: the machine running it died.",
                    )
                ],
            )
        )
    return automations


def ensure_crash_recovery(silence: timedelta | None = None, reschedules: int = 1) -> list[UUID]:
    """Create or update both automations by name (``POST /automations/`` or
    ``PUT /automations/{id}``); return their ids. With ``reschedules=0`` the reschedule
    automation is deleted."""
    ids = []
    with get_client(sync_client=True) as client:
        wanted = crash_recovery_automations(silence, reschedules)
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                ids.append(existing[0].id)
                for duplicate in existing[1:]:
                    client.delete_automation(duplicate.id)
            else:
                ids.append(client.create_automation(automation))
        if len(wanted) == 1:
            for stale in client.read_automations_by_name(RESCHEDULE_AUTOMATION):
                client.delete_automation(stale.id)
    return ids


def remove_crash_recovery() -> None:
    """Delete both automations (``DELETE /automations/{id}``), if present."""
    with get_client(sync_client=True) as client:
        for name in (CRASH_AUTOMATION, RESCHEDULE_AUTOMATION):
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)
