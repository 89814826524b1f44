"""Roll a release out to a workflow's clients: to chosen clients, to a canary share that is
watched before the rest follow, or to all at once; halt, resume and undo.

A canary waits until its clients have finished ``min_runs`` runs (or ``max_hours`` passed),
then compares their failure rate with that of the clients still on the previous release in the
same window: worse by more than ``margin`` halts the rollout and moves the canary clients back;
otherwise the other clients follow. ``tick`` does that evaluation; the CLI's
``agency rollout tick`` and a periodic Prefect flow call it. The agency hears of every outcome
through a log line and the audit log, and of each decision of a canary (continued or halted) by
one email to agency staff and ``AGENCY_NOTIFY_AGENCY_EMAILS`` through the notice relay.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.db import Activation, Client, session_scope
from agency.db.models import Release, Rollout
from agency.errors import AgencyError, InputInvalid, NotFound
from agency.settings import Settings
from services.activations import activate
from services.audit import audit
from services.notifications.delivery import agency_recipients
from services.notifier import Notice, NoticeFailed, send_notice
from services.releases import find_release

logger = logging.getLogger("agency.rollout")

Mode = Literal["clients", "canary", "all"]
FAILED_STATES = ("FAILED", "CRASHED")
FINISHED_STATES = ("COMPLETED", *FAILED_STATES)


@dataclass(frozen=True)
class RolloutView:
    """What faces may show of a rollout."""

    id: int
    workflow: str
    mode: str
    status: str
    to_release: str
    from_release: str | None
    clients: list[str]
    canary_percent: int | None
    started_at: datetime
    finished_at: datetime | None
    detail: dict[str, Any] = field(default_factory=dict)


def _short(session: Session, release_id: int | None) -> str | None:
    if release_id is None:
        return None
    digest = session.scalar(select(Release.digest).where(Release.id == release_id))
    return digest[:12] if digest else None


def _view(session: Session, row: Rollout) -> RolloutView:
    return RolloutView(
        row.id,
        row.workflow,
        row.mode,
        row.status,
        _short(session, row.to_release_id) or "?",
        _short(session, row.from_release_id),
        list(row.clients),
        row.canary_percent,
        row.started_at,
        row.finished_at,
        dict(row.detail),
    )


def _activations(session: Session, workflow: str) -> list[tuple[str, Activation]]:
    rows = session.execute(
        select(Client.slug, Activation)
        .join(Activation, Activation.client_id == Client.id)
        .where(Activation.workflow == workflow, Activation.status != "inactive")
        .order_by(Client.slug)
    ).all()
    return [(slug, act) for slug, act in rows]


def _move(settings: Settings, workflow: str, slug: str, digest: str, actor: str) -> str | None:
    """Pin one client's activation to ``digest``; the refusal message when it cannot move."""
    with session_scope(settings.platform_database_url) as session:
        act = dict(_activations(session, workflow))[slug]
        values = (dict(act.settings), act.cron, act.timezone)
    try:
        activate(settings, slug, workflow, *values, actor=actor, release=digest)
    except AgencyError as exc:
        return str(exc)
    return None


def _announce(session: Session, row: Rollout, action: str, text: str, actor: str) -> None:
    logger.warning("rollout %s of %s: %s", row.id, row.workflow, text)
    audit(
        session,
        actor=actor,
        action=f"rollout.{action}",
        target=row.workflow,
        detail={"rollout": row.id, "message": text, **row.detail},
    )


def _running(session: Session, workflow: str) -> Rollout | None:
    return session.scalar(
        select(Rollout).where(Rollout.workflow == workflow, Rollout.status == "running")
    )


def start_rollout(
    settings: Settings,
    workflow: str,
    release: str,
    *,
    clients: list[str] | None = None,
    canary_percent: int | None = None,
    everyone: bool = False,
    min_runs: int = 5,
    max_hours: float = 24.0,
    margin: float = 0.1,
    actor: str = "cli",
) -> RolloutView:
    """Move clients of ``workflow`` to ``release``: the named ``clients``, a canary of
    ``canary_percent`` % (at least one client), or ``everyone``. Exactly one must be given."""
    if sum(x is not None and x is not False for x in (clients, canary_percent, everyone)) != 1:
        raise InputInvalid("Give exactly one of --clients, --canary or --all.")
    if canary_percent is not None and not 0 < canary_percent < 100:
        raise InputInvalid("--canary takes a share between 1% and 99%.")
    if min_runs < 1 or max_hours <= 0 or not 0 <= margin < 1:
        raise InputInvalid("min_runs must be ≥ 1, max_hours > 0 and margin in [0, 1).")
    with session_scope(settings.platform_database_url) as session:
        target = find_release(session, workflow, release)
        if _running(session, workflow) is not None:
            raise InputInvalid(
                f"A rollout of '{workflow}' is running; halt or undo it first "
                "(`agency rollout status`)."
            )
        current = _activations(session, workflow)
        if not current:
            raise NotFound(f"No client has '{workflow}' activated.")
        others = [(s, a) for s, a in current if a.release_id != target.id]
        pins = [a.release_id for _, a in others if a.release_id is not None]
        previous = max(set(pins), key=pins.count) if pins else None
        if clients is not None:
            known = {s for s, _ in current}
            unknown = sorted(set(clients) - known)
            if unknown:
                raise NotFound(f"'{workflow}' is not activated for: {', '.join(unknown)}.")
            chosen, mode = sorted(set(clients)), "clients"
        elif canary_percent is not None:
            count = max(1, math.ceil(len(current) * canary_percent / 100))
            chosen, mode = [s for s, _ in others][:count], "canary"
        else:
            chosen, mode = [s for s, _ in others], "all"
        digest = target.digest
        row = Rollout(
            workflow=workflow,
            from_release_id=previous,
            to_release_id=target.id,
            mode=mode,
            canary_percent=canary_percent,
            min_runs=min_runs,
            max_hours=max_hours,
            margin=margin,
            status="running",
            clients=[],
            detail={},
            created_by=actor,
        )
        session.add(row)
        session.flush()
        rollout_id = row.id
    moved, refused = _move_all(settings, workflow, chosen, digest, actor)
    with session_scope(settings.platform_database_url) as session:
        row = session.get(Rollout, rollout_id)  # type: ignore[assignment]
        row.clients = moved
        row.detail = {"refused": refused} if refused else {}
        if mode != "canary":
            row.status, row.finished_at = "done", datetime.now(UTC)
        text = f"{mode} rollout of {digest[:12]} to {', '.join(moved) or 'no client'}"
        if refused:
            text += f"; refused for {', '.join(sorted(refused))}"
        _announce(session, row, "start", text, actor)
        session.flush()
        return _view(session, row)


def _move_all(
    settings: Settings, workflow: str, slugs: list[str], digest: str, actor: str
) -> tuple[list[str], dict[str, str]]:
    moved: list[str] = []
    refused: dict[str, str] = {}
    for slug in slugs:
        problem = _move(settings, workflow, slug, digest, actor)
        if problem is None:
            moved.append(slug)
        else:
            refused[slug] = problem
    return moved, refused


def _run_counts(deployment_ids: list[str], since: datetime) -> tuple[int, int]:
    """(finished, failed) flow runs of these deployments that started at or after ``since``."""
    if not deployment_ids:
        return 0, 0
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as api:
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[UUID(d) for d in deployment_ids])
            ),
            flow_run_filter=FlowRunFilter(
                start_time=FlowRunFilterStartTime(after_=since),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType(s) for s in FINISHED_STATES])
                ),
            ),
            limit=200,
        )
    failed = sum(
        1 for r in runs if r.state_type is not None and r.state_type.value in FAILED_STATES
    )
    return len(runs), failed


def tick(settings: Settings, *, actor: str = "rollout") -> list[RolloutView]:
    """Evaluate every running canary: continue it, halt it and move its clients back, or
    leave it waiting for more runs. Returns the rollouts it decided on."""
    with session_scope(settings.platform_database_url) as session:
        ids = list(
            session.scalars(
                select(Rollout.id).where(Rollout.status == "running", Rollout.mode == "canary")
            )
        )
    return [v for v in (_evaluate(settings, i, actor) for i in ids) if v is not None]


def _evaluate(settings: Settings, rollout_id: int, actor: str) -> RolloutView | None:
    with session_scope(settings.platform_database_url) as session:
        row = session.get(Rollout, rollout_id)
        if row is None or row.status != "running":
            return None
        current = _activations(session, row.workflow)
        canary = [a.deployment_id for s, a in current if s in row.clients and a.deployment_id]
        base = [
            a.deployment_id
            for s, a in current
            if s not in row.clients and a.release_id != row.to_release_id and a.deployment_id
        ]
        started, clients, workflow = row.started_at, list(row.clients), row.workflow
        to_release = row.to_release_id
        min_runs, max_hours, margin = row.min_runs, row.max_hours, row.margin
        back = session.scalar(select(Release.digest).where(Release.id == row.from_release_id))
        forward = session.scalar(select(Release.digest).where(Release.id == row.to_release_id))
    canary_runs, canary_failed = _run_counts(canary, started)
    base_runs, base_failed = _run_counts(base, started)
    waited = datetime.now(UTC) - started >= timedelta(hours=max_hours)
    figures = {
        "canary_runs": canary_runs,
        "canary_failed": canary_failed,
        "baseline_runs": base_runs,
        "baseline_failed": base_failed,
    }
    if canary_runs < min_runs and not waited:
        with session_scope(settings.platform_database_url) as session:
            row = session.get(Rollout, rollout_id)
            row.detail = {**row.detail, **figures}  # type: ignore[union-attr]
        return None
    canary_rate = canary_failed / canary_runs if canary_runs else 0.0
    base_rate = base_failed / base_runs if base_runs else 0.0
    worse = canary_runs > 0 and canary_rate > base_rate + margin
    figures |= {"canary_failure_rate": canary_rate, "baseline_failure_rate": base_rate}
    if worse and back is not None:
        moved, refused = _move_all(settings, workflow, clients, back, actor)
        status, action = "halted", "halt"
        text = (
            f"canary failed {canary_failed}/{canary_runs} runs against {base_failed}/{base_runs} "
            f"on the previous release: halted, {', '.join(moved)} moved back to {back[:12]}"
        )
    else:
        rest = [s for s, a in current if s not in clients and a.release_id != to_release]
        moved, refused = _move_all(settings, workflow, rest, forward or "", actor)
        clients += moved
        status, action = "done", "continue"
        text = (
            f"canary failed {canary_failed}/{canary_runs} runs (previous release "
            f"{base_failed}/{base_runs}): continued to {', '.join(moved) or 'no more clients'}"
        )
    with session_scope(settings.platform_database_url) as session:
        row = session.get(Rollout, rollout_id)  # type: ignore[assignment]
        row.status, row.finished_at, row.clients = status, datetime.now(UTC), clients
        row.detail = {**row.detail, **figures, **({"refused": refused} if refused else {})}
        _announce(session, row, action, text, actor)
        session.flush()
        view = _view(session, row)
    _tell_agency(settings, view, text)
    return view


def _tell_agency(settings: Settings, view: RolloutView, text: str) -> None:
    """Email the agency one message about a canary's decision; a relay failure is logged and
    recorded on the rollout (``detail.notice``), never undoes the decision."""
    verb = "halted" if view.status == "halted" else "continued"
    lines = [
        f"The canary of release {view.to_release} of '{view.workflow}' was {verb}.",
        "",
        text[:1].upper() + text[1:] + ".",
        "",
        *(f"{key}: {view.detail[key]}" for key in _FIGURES if key in view.detail),
        *(f"refused for {slug}: {why}" for slug, why in view.detail.get("refused", {}).items()),
        "",
        f"agency rollout status {view.workflow}",
    ]
    if view.status == "halted":
        lines.append(f"agency rollout resume {view.workflow}   (evaluate it again)")
    with session_scope(settings.platform_database_url) as session:
        to = agency_recipients(session, settings, "rollout")
    notice = Notice.of(to, f"Rollout of {view.workflow} {verb}", "\n".join(lines) + "\n")
    try:
        outcome = send_notice(settings, notice, target=f"rollout/{view.id}")
    except NoticeFailed as exc:
        logger.warning("rollout %s of %s: agency not emailed: %s", view.id, view.workflow, exc)
        outcome = "failed"
    with session_scope(settings.platform_database_url) as session:
        row = session.get(Rollout, view.id)
        if row is not None:
            row.detail = {**row.detail, "notice": outcome}


_FIGURES = (
    "canary_runs",
    "canary_failed",
    "canary_failure_rate",
    "baseline_runs",
    "baseline_failed",
    "baseline_failure_rate",
)


def _latest(session: Session, workflow: str) -> Rollout:
    row = session.scalar(
        select(Rollout).where(Rollout.workflow == workflow).order_by(Rollout.id.desc()).limit(1)
    )
    if row is None:
        raise NotFound(f"'{workflow}' has no rollout.")
    return row


def rollout_status(settings: Settings, workflow: str | None = None) -> list[RolloutView]:
    """Rollouts, newest first (of one workflow, or all)."""
    with session_scope(settings.platform_database_url) as session:
        query = select(Rollout).order_by(Rollout.id.desc())
        if workflow is not None:
            query = query.where(Rollout.workflow == workflow)
        return [_view(session, r) for r in session.scalars(query)]


def halt(settings: Settings, workflow: str, *, actor: str = "cli") -> RolloutView:
    """Stop the running rollout where it is (no client moves)."""
    with session_scope(settings.platform_database_url) as session:
        row = _running(session, workflow)
        if row is None:
            raise NotFound(f"No rollout of '{workflow}' is running.")
        row.status = "halted"
        _announce(session, row, "halt", "halted by hand", actor)
        session.flush()
        return _view(session, row)


def resume(settings: Settings, workflow: str, *, actor: str = "cli") -> RolloutView:
    """Let a halted canary be evaluated again."""
    with session_scope(settings.platform_database_url) as session:
        row = _latest(session, workflow)
        if row.status != "halted" or row.mode != "canary":
            raise InputInvalid(f"The last rollout of '{workflow}' is not a halted canary.")
        if _running(session, workflow) is not None:
            raise InputInvalid(f"A rollout of '{workflow}' is already running.")
        row.status, row.finished_at = "running", None
        _announce(session, row, "resume", "resumed", actor)
        session.flush()
        return _view(session, row)


def undo(settings: Settings, workflow: str, *, actor: str = "cli") -> RolloutView:
    """Move every client the last rollout moved back to the release it came from."""
    with session_scope(settings.platform_database_url) as session:
        row = _latest(session, workflow)
        if row.status == "undone" or row.from_release_id is None:
            raise InputInvalid(f"The last rollout of '{workflow}' cannot be undone.")
        back = session.scalar(select(Release.digest).where(Release.id == row.from_release_id))
        clients, rollout_id = list(row.clients), row.id
    moved, refused = _move_all(settings, workflow, clients, back or "", actor)
    with session_scope(settings.platform_database_url) as session:
        row = session.get(Rollout, rollout_id)  # type: ignore[assignment]
        row.status, row.finished_at = "undone", datetime.now(UTC)
        if refused:
            row.detail = {**row.detail, "undo_refused": refused}
        _announce(session, row, "undo", f"{', '.join(moved)} moved back", actor)
        session.flush()
        return _view(session, row)


__all__ = [
    "RolloutView",
    "halt",
    "resume",
    "rollout_status",
    "start_rollout",
    "tick",
    "undo",
]
