"""The ``approve`` node: human-in-the-loop. Suspend the flow run until a reviewer answers.

The node writes the request (message, kind, choices, data, node, workflow, on_timeout,
expires_at) as the flow run input ``agency-approval-<pause key>``, then suspends the flow run with
Prefect's ``suspend_flow_run(wait_for_input=ApprovalAnswer, key=<pause key>)``: the run becomes
``Suspended`` (a Paused state), its process ends and its worker slot is free. The message is the
input's description, so the Prefect UI shows it too. ``services.approvals`` lists these requests
per client and resumes the run with an ``ApprovalAnswer``; Prefect then schedules the run again,
any worker runs the flow from the top, the nodes that completed before come from their persisted
results (see :mod:`nodes._resume`), and this node, asked again with the same pause key, gets the
answer. The pause key is the node call's key, the same in every execution of the run.

Nothing waits in a process for the deadline: ``services.approvals.expire_approvals`` (a scheduled
check) answers an expired request with ``timed_out``, and the ``on_timeout`` policy applies when
the resumed run reaches this node: ``approve`` or ``reject`` continue with decision
``timed_out``; ``cancel`` raises ``ApprovalCancelled`` so the node, and with it the run, fails
without running any later step (no retry). Prefect's own pause timeout is the deadline plus
``PREFECT_TIMEOUT_GRACE_SECONDS``, a backstop that fails the run if the check never ran.

A run without a deployment (a flow called in-process) cannot be suspended: it pauses with
``pause_flow_run`` and waits in its process, checking every ``poll_interval_seconds``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import FlowPauseTimeout, Pause
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import task_run
from prefect.states import Running
from pydantic import Field, model_validator

from agency.errors import ApprovalCancelled, PermanentNodeError
from nodes._base import NodeInput, NodeOutput, NodeSpec, current_workflow, node_task
from nodes._resume import call_key, mark_task_suspended, read_run_input

KIND = "approve"
MAX_WAIT_SECONDS = 7 * 24 * 3600
DETAILS_KEY_PREFIX = "agency-approval-"
#: Prefect fails a run still Suspended this long after its deadline (the check never ran).
PREFECT_TIMEOUT_GRACE_SECONDS = 6 * 3600

ApprovalKind = Literal["approve_reject", "text", "choice"]


class ApprovalAnswer(RunInput):
    """What a reviewer sends back (the typed run input the paused flow waits for)."""

    approved: bool | None = Field(default=None, description="For approve_reject requests.")
    text: str | None = Field(default=None, description="For text requests.")
    choice: str | None = Field(default=None, description="For choice requests.")
    comment: str | None = Field(default=None, description="Optional remark.")
    reviewer: str | None = Field(default=None, description="Who answered.")
    timed_out: bool = Field(
        default=False, description="Set by the deadline check: apply the on_timeout policy."
    )


class ApproveInput(NodeInput):
    """The question to a human and what happens when nobody answers."""

    message: str = Field(min_length=1, title="Message", description="Shown to the reviewer.")
    kind: ApprovalKind = Field(
        default="approve_reject",
        title="Kind",
        description="approve_reject, a free text answer, or one of `choices`.",
    )
    choices: list[str] = Field(
        default_factory=list, title="Choices", description="Options for kind choice."
    )
    data: dict[str, Any] = Field(
        default_factory=dict, title="Data", description="Details shown to the reviewer."
    )
    timeout_seconds: int = Field(
        default=24 * 3600,
        ge=1,
        le=MAX_WAIT_SECONDS,
        title="Timeout",
        description="Seconds to wait for an answer (at most 7 days).",
    )
    on_timeout: Literal["approve", "reject", "cancel"] = Field(
        default="reject",
        title="On timeout",
        description="approve or reject and continue, or cancel: fail the run here.",
    )
    poll_interval_seconds: int = Field(
        default=10,
        ge=1,
        le=300,
        title="Poll interval",
        description="Seconds between checks of a run waiting in its process (no deployment).",
    )

    @model_validator(mode="after")
    def _choices(self) -> ApproveInput:
        if self.kind == "choice" and len(self.choices) < 2:
            raise ValueError("kind choice needs at least two choices")
        if self.kind != "choice" and self.choices:
            raise ValueError("choices are only for kind choice")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be unique")
        return self


class ApproveOutput(NodeOutput):
    """The reviewer's answer, or the timeout policy's."""

    approved: bool | None = Field(
        title="Approved", description="The decision; null for text/choice answers."
    )
    decision: Literal["approved", "rejected", "answered", "timed_out"] = Field(
        title="Decision", description="approved, rejected, answered or timed_out."
    )
    text: str | None = Field(default=None, title="Text", description="Free text answer.")
    choice: str | None = Field(default=None, title="Choice", description="The option chosen.")
    comment: str | None = Field(default=None, title="Comment", description="Reviewer's remark.")
    reviewer: str | None = Field(default=None, title="Reviewer", description="Who answered.")


def _decide(params: ApproveInput, answer: ApprovalAnswer) -> ApproveOutput:
    common = {"comment": answer.comment, "reviewer": answer.reviewer}
    if params.kind == "approve_reject":
        if answer.approved is None:
            raise PermanentNodeError("The approval was answered without approving or rejecting.")
        decision = "approved" if answer.approved else "rejected"
        return ApproveOutput(approved=answer.approved, decision=decision, **common)
    if params.kind == "text":
        return ApproveOutput(approved=None, decision="answered", text=answer.text or "", **common)
    if answer.choice not in params.choices:
        raise PermanentNodeError(f"The answer {answer.choice!r} is not one of {params.choices}.")
    return ApproveOutput(approved=None, decision="answered", choice=answer.choice, **common)


def _waiting_details(params: ApproveInput, node: str) -> dict[str, Any]:
    deadline = datetime.now(UTC) + timedelta(seconds=params.timeout_seconds)
    return {
        "message": params.message,
        "kind": params.kind,
        "choices": params.choices,
        "data": params.data,
        "node": node,
        "workflow": current_workflow(),
        "on_timeout": params.on_timeout,
        "expires_at": deadline.isoformat(),
    }


def _timed_out(params: ApproveInput) -> ApproveOutput:
    get_run_logger().warning(
        "Nobody answered in %ss: %s", params.timeout_seconds, params.on_timeout
    )
    if params.on_timeout == "cancel":
        raise ApprovalCancelled(
            f"Nobody answered '{params.message}' within {params.timeout_seconds}s; "
            "the run stops here."
        )
    return ApproveOutput(approved=params.on_timeout == "approve", decision="timed_out")


def _ask_once(flow_run_id: UUID, key: str, details: dict[str, Any]) -> None:
    """Write the request unless an earlier execution of this run wrote it (its deadline holds)."""
    with get_client(sync_client=True) as api:
        if read_run_input(api, flow_run_id, key) is None:
            api.create_flow_run_input(flow_run_id, key, json.dumps(details))


def _suspend(params: ApproveInput, flow_run_id: UUID) -> ApproveOutput:
    """Suspend the run until answered; the answer is returned when the resumed run gets here."""
    context = TaskRunContext.get()
    assert context is not None
    run = context.task_run
    pause_key = "approve-" + call_key(run.task_key, run.id, {"params": params})
    _ask_once(flow_run_id, DETAILS_KEY_PREFIX + pause_key, _waiting_details(params, run.name))
    answer = suspend_flow_run(
        wait_for_input=ApprovalAnswer.with_initial_data(description=params.message),
        flow_run_id=flow_run_id,
        timeout=params.timeout_seconds + PREFECT_TIMEOUT_GRACE_SECONDS,
        key=pause_key,
    )
    if answer is None:  # suspended just now: the process ends here, the run waits on the server
        get_run_logger().info(
            "Suspended for up to %ss waiting for a reviewer: %s",
            params.timeout_seconds,
            params.message,
        )
        mark_task_suspended("The run is suspended until a reviewer answers.")
        with get_client(sync_client=True) as api:
            raise Pause(state=api.read_flow_run(flow_run_id).state)
    if answer.timed_out:
        return _timed_out(params)
    return _decide(params, answer)


def _pause(params: ApproveInput, flow_run_id: UUID) -> ApproveOutput:
    """Wait in this process (a run without a deployment cannot be suspended)."""
    # One pause per task run: a retry of this task run finds its answer instead of re-asking.
    pause_key = f"approve-{task_run.id}"
    details = _waiting_details(params, task_run.name)
    with get_client(sync_client=True) as api:
        api.create_flow_run_input(flow_run_id, DETAILS_KEY_PREFIX + pause_key, json.dumps(details))
    get_run_logger().info(
        "Waiting up to %ss for a reviewer: %s", params.timeout_seconds, params.message
    )
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalAnswer.with_initial_data(description=params.message),
            timeout=params.timeout_seconds,
            poll_interval=params.poll_interval_seconds,
            key=pause_key,
        )
    except FlowPauseTimeout:
        with get_client(sync_client=True) as api:
            # The run is still Paused on the server; later tasks may only start once it runs.
            api.set_flow_run_state(flow_run_id, Running(), force=True)
        return _timed_out(params)
    if answer.timed_out:
        return _timed_out(params)
    return _decide(params, answer)


@node_task(KIND, timeout_seconds=MAX_WAIT_SECONDS + 3600)
def approve(params: ApproveInput) -> ApproveOutput:
    """Suspend the flow run until a reviewer answers (or the timeout policy applies).

    A deployed run is suspended (its process ends); a run without a deployment pauses in its
    process.

    Example::

        answer = approve(ApproveInput(client="acme", message="Send this offer?",
                                      data={"amount": 1200}, timeout_seconds=3600))
        if answer.approved: ...
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise PermanentNodeError("approve can only run inside a flow run.")
    if context.flow_run.deployment_id is None:
        return _pause(params, context.flow_run.id)
    return _suspend(params, context.flow_run.id)


SPEC = NodeSpec(
    kind=KIND,
    title="Human approval",
    description=(
        "Suspend the run (its worker is free meanwhile) until a reviewer approves / rejects, "
        "answers in text or picks a choice (portal or CLI); on timeout approve, reject or cancel."
    ),
    input_model=ApproveInput,
    output_model=ApproveOutput,
    credential_kind=None,
    task=approve,
    example={
        "client": "acme",
        "message": "Send this offer to the customer?",
        "data": {"amount": 1200, "customer": "Globex"},
        "timeout_seconds": 86400,
        "on_timeout": "reject",
    },
)
