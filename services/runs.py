"""A client's flow runs, read from the Prefect API and scoped by the ``client:<slug>`` tag.

Every call that takes a run or artifact id first reads it and checks its tag against the
principal's client: a run of another client answers exactly like a run that does not exist.
Over the wire: ``POST /flow_runs/filter``, ``GET /flow_runs/{id}``, ``POST /logs/filter``,
``POST /artifacts/filter``, ``POST /flow_runs/{id}/set_state`` (retry), and deployment runs via
:func:`deployments.runs.start_run`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import AwaitingRetry

from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from deployments import runs as _runs
from flows.catalog import get_workflow
from services.audit import audit
from services.auth import Principal, check_session, require_agency, scope_client
from services.clients import get_client_record
from services.failure_words import CANCELLED, explain
from services.scoping import client_session

ACTIVE_STATES = {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED}
FAILED_STATES = {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
BROKEN_STATES = {StateType.FAILED, StateType.CRASHED}
WAITING_STATES = {StateType.PAUSED}  # Paused, Suspended: an approval waits
ATTENTION_STATES = BROKEN_STATES | WAITING_STATES
#: the Runs page's state filter: a word for people -> Prefect state types
STATE_CHOICES: dict[str, tuple[StateType, ...]] = {
    "Failed": (StateType.FAILED, StateType.CRASHED),
    "Waiting": (StateType.PAUSED,),
    "Running": (StateType.RUNNING, StateType.PENDING, StateType.CANCELLING),
    "Scheduled": (StateType.SCHEDULED,),
    "Completed": (StateType.COMPLETED,),
    "Cancelled": (StateType.CANCELLED,),
}
WAITING_WORDS = "The run is waiting for an answer: open Approvals to answer it."
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
    #: why it failed or waits, in the client's words (failed, cancelled and waiting runs)
    reason: str | None = None
    #: agency views only: the raw state message behind ``reason`` (never filled for clients)
    detail: str | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        """True while the run may still change state."""
        return self.state in {s.value for s in ACTIVE_STATES}

    @property
    def failed(self) -> bool:
        return self.state in {s.value for s in FAILED_STATES}

    @property
    def waiting(self) -> bool:
        """True while the run is paused or suspended (an approval waits)."""
        return self.state in {s.value for s in WAITING_STATES}


@dataclass(frozen=True)
class RunFilter:
    """What the Runs page shows: a workflow, state words (keys of :data:`STATE_CHOICES`) and
    days of the expected start (inclusive, UTC); empty fields do not filter."""

    workflow: str | None = None
    states: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True)
class RunsPage:
    """Failed, then waiting runs first (``attention``, newest first, at most ``limit``), then one
    page of the other runs, newest first; ``more`` is how many others follow this page."""

    attention: list[RunView]
    rest: list[RunView]
    offset: int
    has_more: bool

    @property
    def runs(self) -> list[RunView]:
        return self.attention + self.rest


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


def _day_bounds(flt: RunFilter) -> FlowRunFilterExpectedStartTime | None:
    if flt.since is None and flt.until is None:
        return None
    after = datetime.combine(flt.since, time.min, UTC) if flt.since else None
    before = (
        datetime.combine(flt.until + timedelta(days=1), time.min, UTC) - timedelta(microseconds=1)
        if flt.until
        else None
    )
    return FlowRunFilterExpectedStartTime(after_=after, before_=before)


def _run_filter(tags: list[str], types: Collection[StateType], flt: RunFilter) -> FlowRunFilter:
    """``POST /flow_runs/filter`` body: tags, state types and expected start days."""
    all_tags = tags + ([f"workflow:{flt.workflow}"] if flt.workflow else [])
    return FlowRunFilter(
        tags=FlowRunFilterTags(all_=all_tags) if all_tags else None,
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=sorted(types))),
        expected_start_time=_day_bounds(flt),
    )


def _last_failed(tasks: list[TaskRun]) -> dict[UUID, TaskRun]:
    """The last failed task run of each flow run."""
    last: dict[UUID, TaskRun] = {}
    for task in sorted(tasks, key=lambda t: t.state.timestamp if t.state else t.created):
        if task.flow_run_id is not None:
            last[task.flow_run_id] = task
    return last


def _explained(run: FlowRun, task: TaskRun | None, detail: bool) -> RunView:
    """The view with its reason in plain words (``detail``: the raw message, agency only)."""
    view, state = view_run(run), run.state
    if state is None:
        return view
    if state.type in BROKEN_STATES:
        retries = max(task.run_count - 1, 0) if task is not None else 0
        messages = [state.message] + ([task.state.message] if task and task.state else [])
        reasons = [explain(m, retries=retries) for m in messages if m]
        known = [r for r in reasons if r != explain(None)]
        reason = (known or reasons or [explain(None)])[0]
        raw = " | ".join(m for m in messages if m) or None
    elif state.type == StateType.CANCELLED:
        reason, raw = CANCELLED, state.message
    elif state.type in WAITING_STATES:
        reason, raw = WAITING_WORDS, state.message
    else:
        return view
    return replace(view, reason=reason, detail=raw if detail else None)


async def _read_page(
    tags: list[str], flt: RunFilter, limit: int, offset: int
) -> tuple[list[FlowRun], list[FlowRun], list[TaskRun]]:
    """The three reads of a Runs page, at the same time: failed and waiting runs, a page of
    the others (one more, to know whether more follow), and the failed runs' failed tasks."""
    chosen = (
        {t for word in flt.states for t in STATE_CHOICES.get(word, ())}
        if flt.states
        else set(StateType)
    )
    on_top, others = chosen & ATTENTION_STATES, chosen - ATTENTION_STATES
    sort = FlowRunSort.EXPECTED_START_TIME_DESC
    failed_tasks = TaskRunFilter(
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=sorted(BROKEN_STATES)))
    )

    async def nothing() -> list[Any]:
        return []

    async with get_client() as api:
        top, rest, tasks = await asyncio.gather(
            api.read_flow_runs(
                flow_run_filter=_run_filter(tags, on_top, flt), sort=sort, limit=limit
            )
            if on_top
            else nothing(),
            api.read_flow_runs(
                flow_run_filter=_run_filter(tags, others, flt),
                sort=sort,
                limit=limit + 1,
                offset=offset,
            )
            if others
            else nothing(),
            api.read_task_runs(
                flow_run_filter=_run_filter(tags, on_top & BROKEN_STATES, flt),
                task_run_filter=failed_tasks,
                sort=TaskRunSort.END_TIME_DESC,
                limit=200,
            )
            if on_top & BROKEN_STATES
            else nothing(),
        )
    return top, rest, tasks


def _page(tags: list[str], flt: RunFilter, limit: int, offset: int, detail: bool) -> RunsPage:
    """Failed and waiting runs first, then a page of the others (three API calls at once)."""
    top, rest, tasks = asyncio.run(_read_page(tags, flt, limit, offset))
    last = _last_failed(tasks)
    # failed before waiting, each newest first (the sort is stable)
    top.sort(key=lambda r: r.state is None or r.state.type not in BROKEN_STATES)
    return RunsPage(
        attention=[_explained(r, last.get(r.id), detail) for r in top],
        rest=[_explained(r, None, detail) for r in rest[:limit]],
        offset=offset,
        has_more=len(rest) > limit,
    )


def runs_page(
    settings: Settings,
    principal: Principal,
    *,
    client: str | None = None,
    flt: RunFilter | None = None,
    limit: int = 50,
    offset: int = 0,
) -> RunsPage:
    """The client's runs as the Runs page shows them: failed and waiting runs on top, each
    with its reason in the client's words, then the rest newest first (filtered on the
    Prefect API side: tags, state types, expected start)."""
    slug = scope_client(principal, client)
    return _page([f"client:{slug}"], flt or RunFilter(), limit, offset, detail=False)


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
    return _lines(principal, logs)


def _lines(principal: Principal, logs: list[Any]) -> list[LogLine]:
    """Log lines for the principal: a client never gets error lines or tracebacks (the run's
    reason says why it failed, in its words); agency staff get every line."""
    return [
        LogLine(log.timestamp, log.level, log.message)
        for log in logs
        if principal.is_agency or (log.level < 40 and "Traceback (most recent" not in log.message)
    ]


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
    return [_artifact_view(a) for a in artifacts], _lines(principal, logs)


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


def all_runs(
    settings: Settings, principal: Principal, limit: int = 100, flt: RunFilter | None = None
) -> list[RunView]:
    """Agency only: recent runs of every client, failed and waiting first, then newest first;
    each failure with its reason and (``detail``) the raw state message."""
    require_agency(principal)
    page = _page([], flt or RunFilter(), limit, 0, detail=True)
    return [r for r in page.runs if r.client][:limit]


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


#: a run's outcome for invoicing, by state type (unfinished: scheduled, running, waiting)
OUTCOMES: tuple[str, ...] = ("completed", "failed", "cancelled", "unfinished")
_OUTCOME = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CRASHED": "failed",
    "CANCELLED": "cancelled",
}
_OUTCOME_TYPES: dict[str, tuple[StateType, ...]] = {
    "completed": (StateType.COMPLETED,),
    "failed": (StateType.FAILED, StateType.CRASHED),
    "cancelled": (StateType.CANCELLED,),
}


def _month_filter(
    tags: list[str], start: datetime, end: datetime, types: Collection[StateType] = ()
) -> FlowRunFilter:
    return FlowRunFilter(
        tags=FlowRunFilterTags(all_=tags) if tags else None,
        start_time=FlowRunFilterStartTime(after_=start, before_=end - timedelta(microseconds=1)),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=sorted(types)))
        if types
        else None,
    )


def _counted(
    api: Any, client: str, start: datetime, end: datetime, workflows: Collection[str]
) -> dict[tuple[str, str], dict[str, int]] | None:
    """Outcomes per workflow with ``POST /flow_runs/count`` only (4 calls a workflow), or None
    when the client has runs of other workflows (then every run must be read)."""
    tag = f"client:{client}"
    total = api.count_flow_runs(flow_run_filter=_month_filter([tag], start, end))
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for workflow in sorted(set(workflows)):
        tags = [tag, f"workflow:{workflow}"]
        runs = api.count_flow_runs(flow_run_filter=_month_filter(tags, start, end))
        if not runs:
            continue
        row = dict.fromkeys(OUTCOMES, 0)
        for outcome, types in _OUTCOME_TYPES.items():
            row[outcome] = api.count_flow_runs(
                flow_run_filter=_month_filter(tags, start, end, types)
            )
        row["unfinished"] = runs - sum(row.values())
        counts[(client, workflow)] = row
    return counts if sum(sum(r.values()) for r in counts.values()) == total else None


def count_outcomes(
    client: str | None,
    start: datetime,
    end: datetime,
    *,
    workflows: Collection[str] = (),
    page: int = 200,
) -> dict[tuple[str, str], dict[str, int]]:
    """Runs started in ``[start, end)`` per ``(client, workflow)`` and outcome, for one client
    or (``None``) every client; no principal: callers scope first.

    For one client whose runs are all of ``workflows`` (the caller's hint), counts only
    (``POST /flow_runs/count``); otherwise reads ``POST /flow_runs/filter`` pages as plain JSON
    (only tags and state are used), ordered by start time so runs starting meanwhile append.
    """
    with get_client(sync_client=True) as api:
        if client and workflows:
            counted = _counted(api, client, start, end, workflows)
            if counted is not None:
                return counted
        tags = [f"client:{client}"] if client else []
        body: dict[str, Any] = {
            "flow_runs": _month_filter(tags, start, end).model_dump(
                mode="json", exclude_unset=True
            ),
            "sort": FlowRunSort.START_TIME_ASC.value,
            "limit": page,
        }
        counts: dict[tuple[str, str], dict[str, int]] = {}
        offset = 0
        while True:
            # the typed client validates every field of every run; only two are needed here
            answer = api._client.post("/flow_runs/filter", json={**body, "offset": offset})
            answer.raise_for_status()
            runs = answer.json()
            for run in runs:
                tags = run.get("tags") or []
                slug = _tag_value(tags, "client:")
                if not slug:
                    continue
                key = (slug, _tag_value(tags, "workflow:") or "")
                state = run.get("state_type") or (run.get("state") or {}).get("type")
                outcome = _OUTCOME.get(str(state), "unfinished")
                row = counts.setdefault(key, dict.fromkeys(OUTCOMES, 0))
                row[outcome] += 1
            if len(runs) < page:
                return counts
            offset += page


__all__ = [
    "ACTIVE_STATES",
    "ATTENTION_STATES",
    "FAILED_STATES",
    "OUTCOMES",
    "STATE_CHOICES",
    "ArtifactView",
    "LogLine",
    "RunFilter",
    "RunView",
    "RunsPage",
    "all_runs",
    "count_outcomes",
    "count_runs",
    "download_artifact",
    "get_run",
    "list_runs",
    "retry_run",
    "run_artifacts",
    "run_details",
    "run_logs",
    "run_now",
    "runs_page",
    "view_run",
]
