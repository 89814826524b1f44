"""Human approvals: list a client's runs waiting for a reviewer, and answer one.

An ``approve`` node pauses its flow run (Prefect ``Paused`` state with a run-input keyset) and
writes its request as the flow run input ``agency-approval-<pause key>``. Listing reads paused
runs tagged ``client:<client>`` from the Prefect API; answering checks the run is the client's,
audits ``approval.answer`` and resumes the run with an ``ApprovalAnswer`` (``POST
/flow_runs/<id>/resume`` with ``run_input``), which Prefect validates against the stored schema.
A suspended run (a deployed one) is then scheduled again and continues on any worker.
``expire_approvals`` (the scheduled check of :mod:`services.waits_flow`) answers every request
past its deadline with ``timed_out``, so the node's ``on_timeout`` policy applies with no process
waiting for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_runs import resume_flow_run

from agency.db import session_scope
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from nodes._resume import read_run_input
from nodes.approve import DETAILS_KEY_PREFIX, ApprovalAnswer
from services.audit import audit
from services.clients import get_client_record
from services.scoping import client_session

__all__ = ["ApprovalView", "answer_approval", "expire_approvals", "list_pending_approvals"]


@dataclass(frozen=True)
class ApprovalView:
    """One pending approval request as faces may show it."""

    flow_run_id: str
    workflow: str
    node: str
    message: str
    kind: Literal["approve_reject", "text", "choice"]
    choices: list[str]
    data: dict[str, Any]
    requested_at: datetime
    expires_at: datetime | None


def _details(api: Any, run: FlowRun) -> dict[str, Any] | None:
    """The approve node's request behind a paused run, or None when it is not one."""
    state = run.state
    if state is None or not state.is_paused() or not state.state_details.run_input_keyset:
        return None
    raw = read_run_input(api, run.id, DETAILS_KEY_PREFIX + str(state.state_details.pause_key))
    if raw is None:
        return None  # paused by something other than the approve node
    details = json.loads(raw)
    return details if isinstance(details, dict) else None


def _view(run: FlowRun, details: dict[str, Any]) -> ApprovalView:
    assert run.state is not None
    return ApprovalView(
        flow_run_id=str(run.id),
        workflow=str(details.get("workflow") or run.flow_id),
        node=str(details.get("node") or "approve"),
        message=str(details.get("message", "")),
        kind=details.get("kind", "approve_reject"),
        choices=list(details.get("choices") or []),
        data=dict(details.get("data") or {}),
        requested_at=run.state.timestamp,
        expires_at=_deadline(run, details),
    )


def _deadline(run: FlowRun, details: dict[str, Any]) -> datetime | None:
    """The request's own deadline (Prefect's pause timeout is a later backstop)."""
    if details.get("expires_at"):
        return datetime.fromisoformat(str(details["expires_at"]))
    assert run.state is not None
    return run.state.state_details.pause_timeout


def list_pending_approvals(settings: Settings, client: str) -> list[ApprovalView]:
    """The client's runs paused for an approval, oldest request first."""
    with client_session(settings, client) as session:
        get_client_record(session, client)
    views = []
    with get_client(sync_client=True) as api:
        runs = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"client:{client}"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            limit=200,
        )
        for run in runs:
            details = _details(api, run)
            if details is not None:
                views.append(_view(run, details))
    return sorted(views, key=lambda v: v.requested_at)


def _answer(
    view: ApprovalView,
    approved: bool | None,
    text: str | None,
    choice: str | None,
    comment: str | None,
    actor: str,
) -> ApprovalAnswer:
    if view.kind == "approve_reject" and approved is None:
        raise InputInvalid("This request needs approved=true or approved=false.")
    if view.kind == "text" and not text:
        raise InputInvalid("This request needs a text answer.")
    if view.kind == "choice" and choice not in view.choices:
        raise InputInvalid(f"Choose one of: {', '.join(view.choices)}.")
    return ApprovalAnswer(
        approved=approved if view.kind == "approve_reject" else None,
        text=text if view.kind == "text" else None,
        choice=choice if view.kind == "choice" else None,
        comment=comment,
        reviewer=actor,
    )


def answer_approval(
    settings: Settings,
    client: str,
    flow_run_id: str,
    *,
    approved: bool | None = None,
    text: str | None = None,
    choice: str | None = None,
    comment: str | None = None,
    actor: str = "cli",
) -> None:
    """Answer the approval request of one of the client's runs and resume the run.

    Raises ``NotFound`` for an unknown run and, with the same message, for another client's run;
    ``InputInvalid`` when the run no longer waits or the answer does not fit the request.
    """
    missing = NotFound(f"No approval request '{flow_run_id}' for client '{client}'.")
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        try:
            run_id = UUID(flow_run_id)
        except ValueError:
            raise missing from None
        with get_client(sync_client=True) as api:
            try:
                run = api.read_flow_run(run_id)
            except ObjectNotFound:
                raise missing from None
            if f"client:{client}" not in run.tags:
                raise missing
            details = _details(api, run)
        if details is None:
            raise InputInvalid(f"Flow run '{flow_run_id}' is not waiting for an approval.")
        view = _view(run, details)
        answer = _answer(view, approved, text, choice, comment, actor)
        try:
            resume_flow_run(run_id, run_input=answer.model_dump(mode="json"))
        except FlowPauseTimeout:
            raise InputInvalid(f"The approval request '{flow_run_id}' has expired.") from None
        except NotPausedError:
            raise InputInvalid(f"Flow run '{flow_run_id}' is not waiting any more.") from None
        audit(
            session,
            actor=actor,
            action="approval.answer",
            target=flow_run_id,
            client_id=record.id,
            detail={
                "workflow": view.workflow,
                "node": view.node,
                "approved": answer.approved,
                "choice": answer.choice,
                "answered_text": answer.text is not None,
            },
        )


def _paused_runs(api: Any) -> list[FlowRun]:
    runs: list[FlowRun] = []
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    while True:
        page = api.read_flow_runs(flow_run_filter=paused, limit=200, offset=len(runs))
        runs.extend(page)
        if len(page) < 200:
            return runs


def expire_approvals(settings: Settings, *, now: datetime | None = None) -> int:
    """Answer every approval request past its deadline with ``timed_out``; return how many.

    The resumed run applies the request's ``on_timeout`` policy at its approve node. Each
    expiry is audited (``approval.timeout``) for the run's client.
    """
    now = now or datetime.now(UTC)
    expired: list[tuple[FlowRun, dict[str, Any]]] = []
    with get_client(sync_client=True) as api:
        for run in _paused_runs(api):
            details = _details(api, run)
            if details is None:
                continue
            deadline = _deadline(run, details)
            if deadline is not None and deadline <= now:
                expired.append((run, details))
    answered = 0
    for run, details in expired:
        try:
            resume_flow_run(
                run.id,
                run_input=ApprovalAnswer(timed_out=True, reviewer="timeout").model_dump(
                    mode="json"
                ),
            )
        except (FlowPauseTimeout, NotPausedError, RuntimeError):
            continue  # answered meanwhile, or Prefect's own backstop failed it
        answered += 1
        client = next((t.split(":", 1)[1] for t in run.tags if t.startswith("client:")), None)
        if client is None:
            continue
        with session_scope(settings.platform_database_url) as session:
            try:
                record = get_client_record(session, client)
            except NotFound:
                continue
            audit(
                session,
                actor="timeout",
                action="approval.timeout",
                target=str(run.id),
                client_id=record.id,
                detail={
                    "workflow": details.get("workflow"),
                    "node": details.get("node"),
                    "on_timeout": details.get("on_timeout"),
                },
            )
    return answered
