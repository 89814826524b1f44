"""The picture of a workflow: its outline with the state each step had in the client's last run.

The last run of an activation is the client's newest flow run of the workflow that has started
(found by the ``client:<slug>`` and ``workflow:<slug>`` tags, scheduled runs left out); its task
runs are laid on the outline's steps by task run name (:meth:`flows.outline.Outline.step_of`).
Over the wire, for any number of workflows at once: one ``POST /flow_runs/filter`` per workflow
(``limit=1``, all at the same time), then one ``POST /task_runs/filter`` for every last run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import PrefectHTTPStatusError

from agency.settings import Settings
from flows.catalog import get_workflow
from flows.outline import Outline
from services.auth import Principal, scope_client

#: what a step did in the last run, as the picture colours it
StepState = Literal["completed", "failed", "running", "not_run"]
#: a flow run that has started (a scheduled one has not yet)
_STARTED = sorted(set(StateType) - {StateType.SCHEDULED})
_RUNNING = {StateType.RUNNING, StateType.PENDING, StateType.PAUSED, StateType.SCHEDULED}
_FAILED = {StateType.FAILED, StateType.CRASHED}
#: when one step has several task runs (fan-out, retries of a record), the strongest wins
_RANK: dict[StepState, int] = {"not_run": 0, "completed": 1, "running": 2, "failed": 3}
#: task runs read for the last runs at most (one request)
TASK_RUN_LIMIT = 200
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastRun:
    """The flow run a picture shows: id, Prefect state type and name, start time."""

    id: str
    state: str
    state_name: str
    started: datetime | None


@dataclass(frozen=True)
class WorkflowPicture:
    """A workflow's outline, the state of each step in ``run`` (``not_run`` for every step when
    there is no run yet)."""

    workflow: str
    outline: Outline
    run: LastRun | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    #: the last run could not be read (Prefect unreachable): the steps are drawn without states
    runs_unavailable: bool = False

    def state_of(self, step_id: str) -> StepState:
        return self.steps.get(step_id, "not_run")


def task_state(task_run: TaskRun) -> StepState:
    """The step state one task run stands for."""
    state = task_run.state
    if state is None:
        return "not_run"
    if state.type == StateType.COMPLETED:
        if state.name == "Skipped":  # the spec runner's branch not taken
            return "not_run"
        # the spec runner's record of a handled failure, read back when a run resumes
        return "failed" if task_run.name.endswith(".failure") else "completed"
    if state.type in _FAILED:
        return "failed"
    if state.type in _RUNNING:
        return "running"
    return "not_run"  # cancelled


def step_states(outline: Outline, task_runs: Iterable[TaskRun]) -> dict[str, StepState]:
    """Each step's state from a run's task runs (steps without a task run: ``not_run``)."""
    states: dict[str, StepState] = {s.id: "not_run" for s in outline.steps}
    for task_run in task_runs:
        step = outline.step_of(task_run.name)
        if step is not None:
            seen = task_state(task_run)
            if _RANK[seen] > _RANK[states[step]]:
                states[step] = seen
    return states


async def _read_last_runs(
    client: str, workflows: list[str]
) -> tuple[dict[str, FlowRun], list[TaskRun]]:
    async with get_client() as api:

        async def last(workflow: str) -> list[FlowRun]:
            return await api.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"client:{client}", f"workflow:{workflow}"]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_STARTED)),
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=1,
            )

        found = await asyncio.gather(*(last(w) for w in workflows))
        runs = {w: r[0] for w, r in zip(workflows, found, strict=True) if r}
        if not runs:
            return runs, []
        ids: list[UUID] = [r.id for r in runs.values()]
        task_runs = await api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=TASK_RUN_LIMIT
        )
    return runs, task_runs


def pictures(
    settings: Settings,
    principal: Principal,
    workflows: Iterable[str],
    client: str | None = None,
    *,
    runs_of: Collection[str] | None = None,
) -> dict[str, WorkflowPicture]:
    """The pictures of ``workflows`` that have an outline, with the client's last run laid on
    each of ``runs_of`` (default: all of them; pass the activated ones to spare the reads)."""
    slug = scope_client(principal, client)
    outlines = {w: o for w in workflows if (o := get_workflow(w).outline) is not None}
    wanted = [w for w in outlines if runs_of is None or w in runs_of]
    unavailable = False
    try:
        runs, task_runs = asyncio.run(_read_last_runs(slug, wanted)) if wanted else ({}, [])
    except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as exc:
        # a page showing pictures must not fail with them: draw the steps without states
        _log.warning("Cannot read the last runs of %s: %s", slug, type(exc).__name__)
        runs, task_runs, unavailable = {}, [], True
    by_run: dict[UUID, list[TaskRun]] = {}
    for task_run in task_runs:
        if task_run.flow_run_id is not None:
            by_run.setdefault(task_run.flow_run_id, []).append(task_run)
    result: dict[str, WorkflowPicture] = {}
    for workflow, outline in outlines.items():
        run = runs.get(workflow)
        if run is None:
            result[workflow] = WorkflowPicture(
                workflow,
                outline,
                None,
                step_states(outline, []),
                unavailable and workflow in wanted,
            )
            continue
        result[workflow] = WorkflowPicture(
            workflow,
            outline,
            LastRun(
                id=str(run.id),
                state=run.state.type.value if run.state else "UNKNOWN",
                state_name=run.state.name if run.state else "Unknown",
                started=run.start_time,
            ),
            step_states(outline, by_run.get(run.id, [])),
        )
    return result


__all__ = [
    "LastRun",
    "StepState",
    "WorkflowPicture",
    "pictures",
    "step_states",
    "task_state",
]
