"""Crash recovery for flow runs whose worker died: three Prefect automations, nothing home-made.

A worker that stays up reports its own runs Crashed when their process dies. When the worker's
whole machine (or container, or pod) dies, or the worker alone for an ``agency-prefork`` worker
(its children die with it), nobody does: the runs it had claimed stay Pending, and those it had
started stay Running, forever. Prefect's flow engine emits a ``prefect.flow-run.heartbeat``
event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds while a run executes (the platform's
workers set it to :data:`HEARTBEAT_SECONDS`, Prefect's default is 180, its minimum 30); for a
run forked by an ``agency-prefork`` worker, the worker emits them
(:mod:`deployments.prefork.heartbeat`). :func:`ensure_crash_recovery` installs, on the Prefect
server, for the runs of deployments (the runs workers execute; a run started in a process of
its own, such as ``agency spec run``, is left alone):

1. **"agency: crash silent flow runs"**, a proactive trigger (Prefect's documented zombie-run
   automation, also started by ``Running``): after a run enters Running or sends a heartbeat,
   any event of that run (``prefect.flow-run.*``: the next heartbeat or a state change) is
   expected within ``silence``; if none comes, the run is set Crashed with
   :data:`SILENT_CRASH_MESSAGE`. Starting on Running covers a worker that died after its run
   started but before its first heartbeat reached the server.
2. **"agency: crash flow runs stuck in Pending"**, a proactive trigger on the Pending states a
   worker sets when it claims a run (``Pending``, then ``Submitting``, or an integration's
   ``InfrastructurePending``): the run's next state (Running, as a rule) is expected within
   ``pending``; if none comes, the run is set Crashed with :data:`STUCK_PENDING_MESSAGE`. Only
   state changes count: the pull-step events a child sends before Running prove nothing.
   Prefect allows Pending -> Crashed; ``pending`` must exceed the time a live worker takes to
   start a run, or to report that it could not (prefetch included).
3. **"agency: reschedule crashed flow runs of dead workers"**, a reactive trigger on the Crashed
   events that carry one of those two messages and a run count of at most ``reschedules``: the
   run is set ``Scheduled`` named ``AwaitingRetry``, so any live worker on its pool runs it again
   (Prefect allows leaving Crashed for Scheduled when the run has a deployment). A run stuck in
   Pending never started (run count unchanged), so it is rescheduled whatever its run count
   allowed before. Runs whose process died under a live worker keep the worker's own Crashed
   message and are not rescheduled: such a crash may be the run's own fault (out of memory),
   and would repeat.

A rescheduled run starts again from the beginning: runs are retried at least once, not resumed.
With the defaults and 30 s heartbeats, a dead worker's runs are rescheduled at most ~100 s after
it died (Running: the 90 s silence; Pending: the 60 s window; plus the triggers service's few
seconds). The automations need the server's triggers and actions services (``prefect server
start``, or ``prefect server services start`` when API replicas run ``--no-services``).

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
    "DEFAULT_PENDING",
    "HEARTBEAT_SECONDS",
    "PENDING_AUTOMATION",
    "PENDING_STATE_NAMES",
    "RESCHEDULE_AUTOMATION",
    "SILENT_CRASH_MESSAGE",
    "STUCK_PENDING_MESSAGE",
    "crash_recovery_automations",
    "ensure_crash_recovery",
    "remove_crash_recovery",
]

CRASH_AUTOMATION = "agency: crash silent flow runs"
PENDING_AUTOMATION = "agency: crash flow runs stuck in Pending"
RESCHEDULE_AUTOMATION = "agency: reschedule crashed flow runs of dead workers"
#: Earlier names of the automations above, removed by :func:`ensure_crash_recovery`.
_FORMER_NAMES = ("agency: reschedule silent-crashed flow runs",)
_NAMES = (CRASH_AUTOMATION, PENDING_AUTOMATION, RESCHEDULE_AUTOMATION)

#: The Crashed states' messages; the reschedule automation matches on them, exactly.
SILENT_CRASH_MESSAGE = "No heartbeat from this flow run: the machine running it is presumed dead."
STUCK_PENDING_MESSAGE = "Claimed by a worker but never started: the worker is presumed dead."
#: The heartbeat frequency of the platform's workers (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``,
#: set by ``agency worker``, ``make up`` and the manifests in ``infra/`` unless already set).
HEARTBEAT_SECONDS = 30
#: Heartbeats that may be missed before a run counts as dead (Prefect's zombie-run automation
#: and Prefect Cloud's managed detection also wait three).
MISSED_HEARTBEATS = 3
#: How long a claimed run may stay Pending before it counts as abandoned.
DEFAULT_PENDING = timedelta(seconds=60)
#: Names of the Pending states a worker sets while it claims and submits a run.
PENDING_STATE_NAMES = ("Pending", "Submitting", "InfrastructurePending")

_FLOW_RUNS = ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
#: Their state changes only: a claimed run's child runs the deployment's pull steps before it
#: enters Running, and the ``prefect.flow-run.pull-step.*`` events it sends on the way are no
#: sign that the run will start (a child killed right after them would count as alive).
_STATE_CHANGES = ResourceSpecification(
    {"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": "*"}
)
#: Runs of deployments only: every event of such a run (state changes, heartbeats) names it.
_OF_DEPLOYMENTS = ResourceSpecification({"prefect.resource.role": "deployment"})


def _default_silence() -> timedelta:
    # this process's setting, as the workers' should be: the platform's installs set it to
    # HEARTBEAT_SECONDS, Prefect's default (180) is the safe guess elsewhere
    frequency = get_current_settings().flows.heartbeat_frequency or HEARTBEAT_SECONDS
    return timedelta(seconds=MISSED_HEARTBEATS * frequency)


def _silence_trigger(
    after: set[str], within: timedelta, match: ResourceSpecification = _FLOW_RUNS
) -> EventTrigger:
    """After any of ``after``, another event of the same run (among those ``match`` selects) is
    expected ``within``."""
    return EventTrigger(
        after=after,
        expect={"prefect.flow-run.*"},
        match=match,
        match_related=_OF_DEPLOYMENTS,
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=within,
    )


def crash_recovery_automations(
    silence: timedelta | None = None, reschedules: int = 1, pending: timedelta | None = None
) -> list[AutomationCore]:
    """The automations, unsaved. ``silence`` must exceed the workers' heartbeat frequency
    (default: three heartbeats at this process's ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``: 90 s at
    the platform's 30, 9 min at Prefect's default 180); ``pending`` (default
    :data:`DEFAULT_PENDING`) must exceed the time a live worker takes to start a run;
    ``reschedules`` bounds how often one run that started is rescheduled (0: crash only, no
    reschedule automation)."""
    if reschedules < 0:
        raise ValueError("reschedules must be 0 or more")
    automations = [
        AutomationCore(
            name=CRASH_AUTOMATION,
            description="Marks Running flow runs Crashed when their heartbeats stop.",
            trigger=_silence_trigger(
                {"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
                silence or _default_silence(),
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=SILENT_CRASH_MESSAGE)],
        ),
        AutomationCore(
            name=PENDING_AUTOMATION,
            description="Marks flow runs Crashed when the worker that claimed them never "
            "started them.",
            trigger=_silence_trigger(
                {f"prefect.flow-run.{name}" for name in PENDING_STATE_NAMES},
                pending or DEFAULT_PENDING,
                _STATE_CHANGES,
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=STUCK_PENDING_MESSAGE)],
        ),
    ]
    if reschedules:
        # a run stuck in Pending keeps the run count of its previous attempt (0 for the first)
        counts = [str(n) for n in range(0, reschedules + 1)]
        automations.append(
            AutomationCore(
                name=RESCHEDULE_AUTOMATION,
                description="Reschedules flow runs crashed for a dead worker.",
                trigger=EventTrigger(
                    expect={"prefect.flow-run.Crashed"},
                    match=ResourceSpecification(
                        {
                            "prefect.resource.id": "prefect.flow-run.*",
                            "prefect.state-message": [SILENT_CRASH_MESSAGE, STUCK_PENDING_MESSAGE],
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
                        message="Rescheduled: the worker running it died.",
                    )
                ],
            )
        )
    return automations


def ensure_crash_recovery(
    silence: timedelta | None = None, reschedules: int = 1, pending: timedelta | None = None
) -> list[UUID]:
    """Create or update the automations by name (``POST /automations/`` or
    ``PUT /automations/{id}``); return their ids. With ``reschedules=0`` the reschedule
    automation is deleted."""
    ids = []
    with get_client(sync_client=True) as client:
        wanted = crash_recovery_automations(silence, reschedules, pending)
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                ids.append(existing[0].id)
                for duplicate in existing[1:]:
                    client.delete_automation(duplicate.id)
            else:
                ids.append(client.create_automation(automation))
        names = {automation.name for automation in wanted}
        for name in [*_NAMES, *_FORMER_NAMES]:
            if name not in names:
                for stale in client.read_automations_by_name(name):
                    client.delete_automation(stale.id)
    return ids


def remove_crash_recovery() -> None:
    """Delete the automations (``DELETE /automations/{id}``), if present."""
    with get_client(sync_client=True) as client:
        for name in [*_NAMES, *_FORMER_NAMES]:
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)
