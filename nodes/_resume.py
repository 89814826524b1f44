"""Durable resume: a node call's key within one flow run, the same in every execution of it.

A suspended run (``approve``, a long ``delay``) ends its process; once resumed, Prefect runs the
flow function again from the top. A node call made through :func:`resumable` then finds the
result it persisted the first time (cache key: flow run + task + call key) instead of running
again, so an email sent before the wait is not sent twice.

The call key is a digest of the task and its inputs plus how many identical calls came before it
in this execution of the flow: two identical calls in one run are two calls, and the order of
calls with different inputs (concurrent branches) does not matter. A retry of a task run keeps
its key. Runs without a flow run context get the digest alone.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, TypeVar
from uuid import UUID

from prefect import Task
from prefect.cache_policies import CachePolicy
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import State
from prefect.utilities.engine import emit_task_run_state_change_event
from pydantic_core import to_jsonable_python

__all__ = [
    "RESUME",
    "ResumePolicy",
    "call_key",
    "mark_task_suspended",
    "read_run_input",
    "resumable",
]

T = TypeVar("T", bound=Task[Any, Any])

_SLOT = "agency-resume"
_lock = threading.Lock()


def _digest(task_key: str, inputs: dict[str, Any]) -> str:
    blob = json.dumps([task_key, to_jsonable_python(inputs)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def call_key(task_key: str, task_run_id: UUID, inputs: dict[str, Any]) -> str:
    """The key of one node call (``<digest>-<n>``), stable across executions of its flow run."""
    digest = _digest(task_key, inputs)
    context = FlowRunContext.get()
    if context is None:
        return f"{digest}-0"
    # the context's dynamic-key table lives exactly as long as this execution of the flow
    seen = context.task_run_dynamic_keys
    slot = f"{_SLOT}:{task_run_id}"
    with _lock:
        if slot not in seen:
            count = f"{_SLOT}:{digest}"
            n = int(seen.get(count, 0))
            seen[count] = n + 1
            seen[slot] = f"{digest}-{n}"
        return str(seen[slot])


class ResumePolicy(CachePolicy):
    """Cache key ``resume-<flow run>-<call key>``: a re-executed flow run finds its results."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        run = task_ctx.task_run
        if run.flow_run_id is None:
            return None
        return f"resume-{run.flow_run_id}-{call_key(run.task_key, run.id, inputs)}"


RESUME = ResumePolicy()


def resumable(node: T) -> T:
    """``node`` with its result persisted under its call key, for flows that may suspend."""
    return node.with_options(cache_policy=RESUME, persist_result=True)  # type: ignore[return-value]


def read_run_input(api: Any, flow_run_id: UUID, key: str) -> str | None:
    """The flow run input ``key`` (a sync Prefect client), or None when there is none."""
    try:
        return str(api.read_flow_run_input(flow_run_id, key))
    except ObjectNotFound:
        return None
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise


def mark_task_suspended(message: str) -> None:
    """Record the current task run as ``Suspended`` (a Paused state) before its process ends.

    Its flow run is suspended or rescheduled and this task run will never finish: without this
    it would show ``Running`` for good. The state goes the way the task engine sends its own
    (an event), so it lands after the ``Running`` one. The resumed run makes a new task run.
    """
    context = TaskRunContext.get()
    if context is None:
        return
    run = context.task_run
    state: State[Any] = State(type=StateType.PAUSED, name="Suspended", message=message)
    emit_task_run_state_change_event(task_run=run, initial_state=run.state, validated_state=state)
    run.state = state
