"""The ``delay`` node: wait a number of seconds, then continue.

A wait up to ``Settings.delay_suspend_seconds`` (default 60) sleeps in the run's process. A longer
one in a deployed run holds nothing while it waits: the node records when the wait ends (flow run
input ``agency-delay-<call key>``, written once), sets the flow run ``Scheduled`` (named
``Delayed``) for that time and ends the process. At that time any worker starts the run again;
the flow runs from the top, the nodes that completed before come from their persisted results
(see :mod:`nodes._resume`), and this node, finding its end time passed, returns. A run without a
deployment cannot be rescheduled and sleeps.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import Pause
from prefect.states import Scheduled
from pydantic import Field

from agency.settings import get_settings
from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task
from nodes._resume import call_key, mark_task_suspended, read_run_input

KIND = "delay"
MAX_SECONDS = 7 * 24 * 3600.0
KEY_PREFIX = "agency-delay-"
STATE_NAME = "Delayed"


class DelayInput(NodeInput):
    """How long to wait."""

    seconds: float = Field(
        ge=0, le=MAX_SECONDS, title="Seconds", description="How long to wait (at most 7 days)."
    )


class DelayOutput(NodeOutput):
    """How long the node actually waited."""

    waited_seconds: float = Field(title="Waited", description="Seconds actually waited.")


def _wait_window(flow_run_id: UUID, key: str, seconds: float) -> tuple[datetime, datetime]:
    """When this wait started and ends: recorded by the run's first execution, read after."""
    with get_client(sync_client=True) as api:
        raw = read_run_input(api, flow_run_id, key)
        if raw is not None:
            recorded = json.loads(raw)
            return (
                datetime.fromisoformat(recorded["started"]),
                datetime.fromisoformat(recorded["due"]),
            )
        started = datetime.now(UTC)
        due = started + timedelta(seconds=seconds)
        window = {"started": started.isoformat(), "due": due.isoformat()}
        api.create_flow_run_input(flow_run_id, key, json.dumps(window))
        return started, due


def _suspended_delay(params: DelayInput, flow_run_id: UUID, threshold: float) -> DelayOutput:
    context = TaskRunContext.get()
    assert context is not None
    run = context.task_run
    key = KEY_PREFIX + call_key(run.task_key, run.id, {"params": params})
    started, due = _wait_window(flow_run_id, key, params.seconds)
    remaining = (due - datetime.now(UTC)).total_seconds()
    if remaining > threshold:
        get_run_logger().info("Suspending the run until %s (delay of %ss)", due, params.seconds)
        with get_client(sync_client=True) as api:
            api.set_flow_run_state(
                flow_run_id, Scheduled(scheduled_time=due, name=STATE_NAME), force=True
            )
            mark_task_suspended(f"The run sleeps until {due.isoformat()}.")
            # ends this process (exit code 0); the worker starts the run again at ``due``
            raise Pause(state=api.read_flow_run(flow_run_id).state)
    time.sleep(max(remaining, 0.0))  # started again a little early: finish the wait here
    return DelayOutput(waited_seconds=round((datetime.now(UTC) - started).total_seconds(), 3))


@node_task(KIND, timeout_seconds=MAX_SECONDS + 60)
def delay(params: DelayInput) -> DelayOutput:
    """Wait ``seconds``: sleep when short, suspend and reschedule the run when long.

    Example::

        delay(DelayInput(client="acme", seconds=30))
    """
    threshold = get_settings().delay_suspend_seconds
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    if flow_run is not None and flow_run.deployment_id is not None and params.seconds > threshold:
        return _suspended_delay(params, flow_run.id, threshold)
    start = time.monotonic()
    time.sleep(params.seconds)
    return DelayOutput(waited_seconds=round(time.monotonic() - start, 3))


SPEC = NodeSpec(
    kind=KIND,
    title="Delay",
    description=(
        "Wait a number of seconds (up to 7 days) before the next step; a long wait frees the "
        "worker and the run is rescheduled."
    ),
    input_model=DelayInput,
    output_model=DelayOutput,
    credential_kind=None,
    task=delay,
    example={"client": "acme", "seconds": 30},
)
