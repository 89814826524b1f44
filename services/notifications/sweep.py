"""The notifications sweep: read the Prefect API for what needs people, record incidents, deliver.

One pass (:func:`sweep`), run every minute by the ``notifications_sweep/every-minute`` deployment:

- **run failed**: flow runs tagged ``client:<slug>`` that ended ``FAILED`` or ``CRASHED`` since
  the last pass (minus a few minutes of overlap) — final states, reached after the run's own
  retries (``POST /flow_runs/filter`` on state type and ``end_time``);
- **approval waiting**: flow runs in a ``PAUSED`` state (paused or suspended for an answer), one
  incident per run and pause;
- **run late**: ``SCHEDULED`` runs (Prefect's ``Late`` included) of an active activation whose
  expected start is further in the past than the activation's limit: its own
  ``late_after_minutes``, else twice the median duration of its deployment's last completed
  runs, else 15 minutes (never under :data:`MIN_LATE_AFTER`, the sweep's own cadence);

then every undelivered incident is delivered and due digests sent (:mod:`.delivery`). Each read
is bounded by state, time and a limit; only runs of active clients count. Incidents are keyed by
kind and subject, so a pass that reads a run again (or runs twice) sends nothing twice.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from sqlalchemy import select

from agency.db import Activation, Client, session_scope, utcnow
from agency.db.models import NotificationWatermark
from agency.errors import InputInvalid, NotFound
from agency.redaction import redact
from agency.settings import Settings
from flows.catalog import get_workflow
from services.failure_words import explain
from services.notifications.delivery import DeliveryReport, Incident, deliver_pending, open_incident
from services.scoping import client_session

logger = logging.getLogger("agency.notifications")
WATERMARK = "sweep"
FIRST_LOOK_BACK = timedelta(hours=1)
OVERLAP = timedelta(minutes=5)
LATE_LOOK_BACK = timedelta(days=2)
DEFAULT_LATE_AFTER = timedelta(minutes=15)
MIN_LATE_AFTER = timedelta(minutes=1)
HISTORY_RUNS = 10
READ_LIMIT = 200  # the most one read of the Prefect API returns
RUNS_PAGE = "client-runs"
APPROVALS_PAGE = "client-approvals"


@dataclass
class SweepReport:
    """What one pass found and sent."""

    opened: dict[str, int] = field(default_factory=dict)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        """Counts for a flow's result and logs (no names, no addresses)."""
        return {
            "opened": dict(self.opened),
            "delivered": self.delivery.delivered,
            "sent": self.delivery.sent,
            "queued": self.delivery.queued,
            "digests": self.delivery.digests,
            "errors": len(self.delivery.errors),
        }


@dataclass(frozen=True)
class _Client:
    id: int
    slug: str
    name: str


def _tag(run: FlowRun, prefix: str) -> str | None:
    for tag in run.tags:
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return None


def _workflow_title(slug: str) -> str:
    try:
        return get_workflow(slug).title
    except NotFound:
        return slug.replace("_", " ")


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at else "an unknown time"


def _states(*types: StateType) -> FlowRunFilterState:
    return FlowRunFilterState(type=FlowRunFilterStateType(any_=list(types)))


# --- the three detectors ------------------------------------------------------------------


def _failed(settings: Settings, run: FlowRun, client: _Client) -> Incident:
    workflow = _tag(run, "workflow:") or ""
    title = _workflow_title(workflow)
    state = run.state
    message = state.message if state else None
    reason = explain(message)
    portal = settings.portal_base_url
    ended = run.end_time or (state.timestamp if state else None)
    raw = redact(message or "no message")[:1000]
    return Incident(
        kind="run_failed",
        subject=str(run.id),
        client=client.slug,
        client_title=f"Your workflow '{title}' failed",
        client_body=(
            f"Hello,\n\nA run of your workflow '{title}' ({run.name}) failed at {_when(ended)}, "
            f"after its retries.\n\nWhy: {reason}\n\nSee the run and retry it under Runs: "
            f"{portal}/{RUNS_PAGE}\n"
        ),
        agency_title=f"[{client.slug}] {workflow} run {run.name} failed",
        agency_body=(
            f"Client {client.name} ({client.slug}): run {run.name} ({run.id}) of {workflow} "
            f"ended {state.name if state else 'Failed'} at {_when(ended)}.\n"
            f"Client's words: {reason}\nState message: {raw}\n"
        ),
    )


def _waiting(settings: Settings, run: FlowRun, client: _Client) -> Incident:
    workflow = _tag(run, "workflow:") or ""
    title = _workflow_title(workflow)
    state = run.state
    assert state is not None
    key = state.state_details.pause_key or "pause"
    link = f"{settings.portal_base_url}/{APPROVALS_PAGE}"
    expires = state.state_details.pause_timeout
    until = f" Unanswered, it times out at {_when(expires)}." if expires else ""
    return Incident(
        kind="approval_waiting",
        subject=f"{run.id}:{key}",
        client=client.slug,
        client_title=f"Your answer is needed: '{title}' is waiting",
        client_body=(
            f"Hello,\n\nA run of your workflow '{title}' ({run.name}) is waiting for an approval "
            f"or an answer since {_when(state.timestamp)}.{until}\n\nAnswer it here: {link}\n"
        ),
        agency_title=f"[{client.slug}] {workflow} run {run.name} waits for an approval",
        agency_body=(
            f"Client {client.name} ({client.slug}): run {run.name} ({run.id}) of {workflow} "
            f"waits for an answer since {_when(state.timestamp)}.{until}\nPortal: {link}\n"
        ),
    )


def _late(
    run: FlowRun, client: _Client, activation_id: int, limit: timedelta, now: datetime
) -> Incident:
    workflow = _tag(run, "workflow:") or ""
    title = _workflow_title(workflow)
    expected = run.expected_start_time
    assert expected is not None
    minutes = int((now - expected).total_seconds() // 60)
    allowed = max(1, int(limit.total_seconds() // 60))
    return Incident(
        kind="run_late",
        subject=f"{activation_id}@{expected.isoformat()}",
        client=client.slug,
        client_title=f"Your workflow '{title}' has not started",
        client_body=(
            f"Hello,\n\nThe run of your workflow '{title}' scheduled for {_when(expected)} has "
            f"not started yet ({minutes} min late; it usually may take up to {allowed} min). "
            "Your agency has been told and is looking into it.\n"
        ),
        agency_title=f"[{client.slug}] {workflow} scheduled run {minutes} min late",
        agency_body=(
            f"Client {client.name} ({client.slug}): run {run.name} ({run.id}) of {workflow}, "
            f"expected at {_when(expected)}, is still {run.state.name if run.state else '?'} "
            f"after {minutes} min (limit {allowed} min). Check the work pool's workers.\n"
        ),
    )


def late_after(override_minutes: int | None, durations: list[timedelta]) -> timedelta:
    """An activation's lateness limit: its own, else 2x its usual duration, else 15 min."""
    if override_minutes is not None:
        return max(timedelta(minutes=override_minutes), MIN_LATE_AFTER)
    if durations:
        usual = timedelta(seconds=statistics.median(d.total_seconds() for d in durations))
        return max(2 * usual, MIN_LATE_AFTER)
    return DEFAULT_LATE_AFTER


def _durations(api: Any, deployment_id: UUID) -> list[timedelta]:
    runs = api.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            state=_states(StateType.COMPLETED),
        ),
        sort=FlowRunSort.END_TIME_DESC,
        limit=HISTORY_RUNS,
    )
    return [r.end_time - r.start_time for r in runs if r.start_time and r.end_time]


# --- the pass -----------------------------------------------------------------------------


def _active_clients(settings: Settings) -> dict[str, _Client]:
    with session_scope(settings.platform_database_url) as session:
        rows = session.execute(
            select(Client.id, Client.slug, Client.name).where(Client.status == "active")
        )
        return {slug: _Client(cid, slug, name) for cid, slug, name in rows}


def _activations(settings: Settings) -> dict[tuple[int, str], tuple[int, int | None]]:
    """(client id, workflow) -> (activation id, late_after_minutes) of active activations."""
    with session_scope(settings.platform_database_url) as session:
        rows = session.execute(
            select(
                Activation.client_id,
                Activation.workflow,
                Activation.id,
                Activation.late_after_minutes,
            ).where(Activation.status == "active")
        )
        return {(cid, wf): (aid, late) for cid, wf, aid, late in rows}


def _watermark(settings: Settings) -> datetime | None:
    with session_scope(settings.platform_database_url) as session:
        row = session.get(NotificationWatermark, WATERMARK)
        return row.at if row else None


def _advance(settings: Settings, at: datetime) -> None:
    with session_scope(settings.platform_database_url) as session:
        row = session.get(NotificationWatermark, WATERMARK)
        if row is None:
            session.add(NotificationWatermark(name=WATERMARK, at=at))
        elif at > row.at:
            row.at = at


def detect(settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Read the Prefect API once per detector and record the incidents found (new ones only);
    returns how many new incidents of each kind were recorded."""
    now = now or utcnow()
    since = (_watermark(settings) or now - FIRST_LOOK_BACK) - OVERLAP
    clients = _active_clients(settings)
    activations = _activations(settings)
    found: list[Incident] = []
    with get_client(sync_client=True) as api:
        failed = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=_states(StateType.FAILED, StateType.CRASHED),
                end_time=FlowRunFilterEndTime(after_=since),
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=READ_LIMIT,
        )
        paused = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=_states(StateType.PAUSED)), limit=READ_LIMIT
        )
        scheduled = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=_states(StateType.SCHEDULED),
                expected_start_time=FlowRunFilterExpectedStartTime(
                    after_=now - LATE_LOOK_BACK, before_=now - MIN_LATE_AFTER
                ),
                deployment_id=FlowRunFilterDeploymentId(is_null_=False),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=READ_LIMIT,
        )
        for run in failed:
            client = clients.get(_tag(run, "client:") or "")
            if client is not None:
                found.append(_failed(settings, run, client))
        for run in paused:
            client = clients.get(_tag(run, "client:") or "")
            if client is not None and run.state is not None:
                found.append(_waiting(settings, run, client))
        history: dict[UUID, list[timedelta]] = {}
        for run in scheduled:
            client = clients.get(_tag(run, "client:") or "")
            workflow = _tag(run, "workflow:")
            if client is None or workflow is None or run.deployment_id is None:
                continue
            activation = activations.get((client.id, workflow))
            if activation is None or run.expected_start_time is None:
                continue
            activation_id, override = activation
            if override is None and run.deployment_id not in history:
                history[run.deployment_id] = _durations(api, run.deployment_id)
            limit = late_after(override, history.get(run.deployment_id, []))
            if now - run.expected_start_time > limit:
                found.append(_late(run, client, activation_id, limit, now))
    opened: dict[str, int] = {}
    for incident in found:
        if open_incident(settings, incident, now=now):
            opened[incident.kind] = opened.get(incident.kind, 0) + 1
    _advance(settings, now)
    return opened


def sweep(settings: Settings, *, now: datetime | None = None) -> SweepReport:
    """One pass: detect incidents on the Prefect API, then deliver what is pending and due."""
    started = utcnow()
    report = SweepReport(opened=detect(settings, now=now))
    report.delivery = deliver_pending(settings, now=now)
    report.seconds = (utcnow() - started).total_seconds()
    return report


def set_late_after(settings: Settings, client: str, workflow: str, minutes: int | None) -> None:
    """Set (or with None, clear) how many minutes a scheduled run of ``client``'s ``workflow``
    may be late before it is notified."""
    if minutes is not None and not 1 <= minutes <= 7 * 24 * 60:
        raise InputInvalid("The lateness limit must be between 1 minute and 7 days.")
    with client_session(settings, client) as session:
        activation = session.scalar(
            select(Activation)
            .join(Client)
            .where(Client.slug == client, Activation.workflow == workflow)
        )
        if activation is None:
            raise NotFound(f"'{workflow}' is not activated for {client}.")
        activation.late_after_minutes = minutes


__all__ = ["SweepReport", "detect", "late_after", "set_late_after", "sweep"]
