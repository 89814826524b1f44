"""A client's flow runs, read from the Prefect API and scoped by the ``client:<slug>`` tag.

Every call that takes a run or artifact id first reads it and checks its tag against the
principal's client: a run of another client answers exactly like a run that does not exist.
Over the wire: ``POST /flow_runs/filter``, ``GET /flow_runs/{id}``, ``POST /logs/filter``,
``POST /artifacts/filter``, ``POST /flow_runs/{id}/set_state`` (retry), and deployment runs via
:func:`deployments.runs.start_run`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterId,
    FlowRunFilter,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import AwaitingRetry

from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from deployments import runs as _runs
from flows.catalog import get_workflow
from services.audit import audit
from services.auth import Principal, check_session, require_agency, scope_client
from services.clients import get_client_record
from services.scoping import client_session

ACTIVE_STATES = {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED}
FAILED_STATES = {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
_NOT_FOUND = "That run does not exist or is not one of yours."


@dataclass(frozen=True)
class RunView:
    """One flow run as faces show it."""

    id: str
    name: str
    client: str
    workflow: str
    state: str
    state_name: str
    started: datetime | None
    duration: timedelta | None
    trigger: str
    expected_start: datetime | None

    @property
    def active(self) -> bool:
        """True while the run may still change state."""
        return self.state in {s.value for s in ACTIVE_STATES}

    @property
    def failed(self) -> bool:
        return self.state in {s.value for s in FAILED_STATES}


@dataclass(frozen=True)
class LogLine:
    """One log line of a run."""

    at: datetime
    level: int
    message: str


@dataclass(frozen=True)
class ArtifactView:
    """A run's output: a Prefect artifact (markdown, table, link, ...)."""

    id: str
    key: str | None
    type: str
    description: str | None
    data: Any
    created: datetime | None

    @property
    def filename(self) -> str:
        """A download name for the artifact's content."""
        ext = {"markdown": "md", "table": "json", "link": "txt"}.get(self.type, "txt")
        return f"{self.key or self.id}.{ext}"

    def content(self) -> bytes:
        """The artifact's data as downloadable bytes."""
        if isinstance(self.data, str):
            return self.data.encode()
        return json.dumps(self.data, indent=2, default=str).encode()


def _tag_value(tags: list[str], prefix: str) -> str | None:
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return None


def _trigger(run: FlowRun) -> str:
    explicit = _tag_value(run.tags, "trigger:")
    if explicit:
        return explicit
    if run.auto_scheduled:
        return "cron"
    if run.created_by is not None and run.created_by.type == "AUTOMATION":
        return "chain"
    return "manual"


def view_run(run: FlowRun) -> RunView:
    """The face-safe view of a Prefect flow run."""
    duration = None
    if run.start_time is not None:
        if run.end_time is not None:
            duration = run.end_time - run.start_time
        else:
            duration = run.estimated_run_time
    return RunView(
        id=str(run.id),
        name=run.name,
        client=_tag_value(run.tags, "client:") or "",
        workflow=_tag_value(run.tags, "workflow:") or "",
        state=run.state.type.value if run.state else "UNKNOWN",
        state_name=run.state.name if run.state else "Unknown",
        started=run.start_time,
        duration=duration,
        trigger=_trigger(run),
        expected_start=run.expected_start_time,
    )


def _parse_id(run_id: str | UUID) -> UUID:
    try:
        return UUID(str(run_id))
    except ValueError:
        raise NotFound(_NOT_FOUND) from None


def _owned_run(api: Any, principal: Principal, run_id: str | UUID) -> FlowRun:
    """Read the run and check it belongs to a client the principal may see."""
    check_session(principal)
    try:
        run = api.read_flow_run(_parse_id(run_id))
    except ObjectNotFound:
        raise NotFound(_NOT_FOUND) from None
    client = _tag_value(run.tags, "client:")
    if client is None or (not principal.is_agency and client != principal.client):
        raise NotFound(_NOT_FOUND)
    return run


def _audit(
    settings: Settings,
    principal: Principal,
    client: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        audit(
            session,
            actor=principal.email,
            action=action,
            target=target,
            client_id=record.id,
            detail=detail,
        )


def list_runs(
    settings: Settings,
    principal: Principal,
    *,
    client: str | None = None,
    workflow: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RunView]:
    """The client's runs, newest first (``POST /flow_runs/filter`` with the client tag)."""
    slug = scope_client(principal, client)
    tags = [f"client:{slug}"] + ([f"workflow:{workflow}"] if workflow else [])
    with get_client(sync_client=True) as api:
        runs = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags)),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
            offset=offset,
        )
    return [view_run(r) for r in runs]


def get_run(settings: Settings, principal: Principal, run_id: str | UUID) -> RunView:
    """One run of the principal's client; ``NotFound`` for another client's run."""
    with get_client(sync_client=True) as api:
        return view_run(_owned_run(api, principal, run_id))


def run_logs(
    settings: Settings, principal: Principal, run_id: str | UUID, limit: int = 200
) -> list[LogLine]:
    """The run's log lines, oldest first (``POST /logs/filter``)."""
    with get_client(sync_client=True) as api:
        run = _owned_run(api, principal, run_id)
        logs = api.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
            sort=LogSort.TIMESTAMP_ASC,
            limit=limit,
        )
    return [LogLine(log.timestamp, log.level, log.message) for log in logs]


def _artifact_view(artifact: Any) -> ArtifactView:
    return ArtifactView(
        id=str(artifact.id),
        key=artifact.key,
        type=artifact.type or "unknown",
        description=artifact.description,
        data=artifact.data,
        created=artifact.created,
    )


def run_artifacts(
    settings: Settings, principal: Principal, run_id: str | UUID
) -> list[ArtifactView]:
    """The run's outputs (``POST /artifacts/filter`` by flow run id)."""
    with get_client(sync_client=True) as api:
        run = _owned_run(api, principal, run_id)
        artifacts = api.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    return [_artifact_view(a) for a in artifacts]


def run_details(
    settings: Settings, principal: Principal, run_id: str | UUID, log_limit: int = 200
) -> tuple[list[ArtifactView], list[LogLine]]:
    """The run's outputs and log lines with one ownership check (the Runs page's detail pane)."""
    with get_client(sync_client=True) as api:
        run = _owned_run(api, principal, run_id)
        artifacts = api.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        logs = api.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
            sort=LogSort.TIMESTAMP_ASC,
            limit=log_limit,
        )
    return [_artifact_view(a) for a in artifacts], [
        LogLine(log.timestamp, log.level, log.message) for log in logs
    ]


def download_artifact(
    settings: Settings, principal: Principal, artifact_id: str | UUID
) -> tuple[str, bytes]:
    """``(filename, content)`` of one output, after checking the run it belongs to; audited."""
    with get_client(sync_client=True) as api:
        found = api.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[_parse_id(artifact_id)]))
        )
        if not found or found[0].flow_run_id is None:
            raise NotFound("That output does not exist or is not one of yours.")
        try:
            run = _owned_run(api, principal, found[0].flow_run_id)
        except NotFound:
            raise NotFound("That output does not exist or is not one of yours.") from None
    view = _artifact_view(found[0])
    client = _tag_value(run.tags, "client:") or ""
    _audit(settings, principal, client, "run.download", view.filename, {"run": str(run.id)})
    return view.filename, view.content()


def run_now(
    settings: Settings, principal: Principal, workflow: str, *, client: str | None = None
) -> RunView:
    """Start the client's deployment ``<workflow>/<client>`` now (tag ``trigger:manual``)."""
    slug = scope_client(principal, client)
    get_workflow(workflow)
    run = _runs.start_run(workflow, slug)
    _audit(settings, principal, slug, "run.start", workflow, {"run": str(run.id)})
    return view_run(run)


def retry_run(settings: Settings, principal: Principal, run_id: str | UUID) -> RunView:
    """Re-run a finished, failed deployment run: its state goes to ``AwaitingRetry``."""
    with get_client(sync_client=True) as api:
        run = _owned_run(api, principal, run_id)
        if run.state is None or run.state.type not in FAILED_STATES:
            raise InputInvalid("Only a failed, crashed or cancelled run can be retried.")
        if run.deployment_id is None:
            raise InputInvalid("This run was not started from an activation; start a new one.")
        api.set_flow_run_state(run.id, AwaitingRetry(), force=True)
        run = api.read_flow_run(run.id)
    view = view_run(run)
    _audit(settings, principal, view.client, "run.retry", view.workflow, {"run": view.id})
    return view


def all_runs(settings: Settings, principal: Principal, limit: int = 100) -> list[RunView]:
    """Agency only: recent runs of every client, failures first, then newest first."""
    require_agency(principal)
    with get_client(sync_client=True) as api:
        failed = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(FAILED_STATES)))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
        recent = api.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit)
    seen = {r.id for r in failed}
    runs = [view_run(r) for r in failed] + [view_run(r) for r in recent if r.id not in seen]
    return [r for r in runs if r.client][:limit]


def count_runs(
    settings: Settings, principal: Principal, since: datetime, client: str | None = None
) -> dict[tuple[str, str], int]:
    """Runs started since ``since`` per ``(month 'YYYY-MM', workflow)`` for the client."""
    slug = scope_client(principal, client)
    counts: dict[tuple[str, str], int] = {}
    offset, page = 0, 200
    with get_client(sync_client=True) as api:
        while True:
            runs = api.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"client:{slug}"]),
                    start_time=FlowRunFilterStartTime(after_=since),
                ),
                sort=FlowRunSort.ID_DESC,
                limit=page,
                offset=offset,
            )
            for run in runs:
                if run.start_time is None:
                    continue
                key = (f"{run.start_time:%Y-%m}", _tag_value(run.tags, "workflow:") or "")
                counts[key] = counts.get(key, 0) + 1
            if len(runs) < page:
                return counts
            offset += page


__all__ = [
    "ACTIVE_STATES",
    "FAILED_STATES",
    "ArtifactView",
    "LogLine",
    "RunView",
    "all_runs",
    "count_runs",
    "download_artifact",
    "get_run",
    "list_runs",
    "retry_run",
    "run_artifacts",
    "run_details",
    "run_logs",
    "run_now",
    "view_run",
]
