"""The ``approve`` node: human-in-the-loop. Pause the flow run until a reviewer answers.

The node writes the request (message, kind, choices, data, node, workflow) as the flow run input
``agency-approval-<pause key>``, then pauses the flow run with Prefect's
``pause_flow_run(wait_for_input=ApprovalAnswer, timeout=...)``; the message is the input's
description, so the Prefect UI shows it too. ``services.approvals`` lists these requests
per client and resumes the run with an ``ApprovalAnswer``. When nobody answers within
``timeout_seconds`` the ``on_timeout`` policy applies: ``approve`` or ``reject`` continue the run
with decision ``timed_out``; ``cancel`` raises ``ApprovalCancelled`` so the node, and with it
the run, fails without running any later step (no retry).

Prefect keeps the run's process (and worker slot) busy while it waits, checking every
``poll_interval_seconds``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import task_run
from prefect.states import Running
from pydantic import Field, model_validator

from agency.errors import ApprovalCancelled, PermanentNodeError
from nodes._base import NodeInput, NodeOutput, NodeSpec, current_workflow, node_task

KIND = "approve"
MAX_WAIT_SECONDS = 7 * 24 * 3600
DETAILS_KEY_PREFIX = "agency-approval-"

ApprovalKind = Literal["approve_reject", "text", "choice"]


class ApprovalAnswer(RunInput):
    """What a reviewer sends back (the typed run input the paused flow waits for)."""

    approved: bool | None = Field(default=None, description="For approve_reject requests.")
    text: str | None = Field(default=None, description="For text requests.")
    choice: str | None = Field(default=None, description="For choice requests.")
    comment: str | None = Field(default=None, description="Optional remark.")
    reviewer: str | None = Field(default=None, description="Who answered.")


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
        default=10, ge=1, le=300, title="Poll interval", description="Seconds between checks."
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


@node_task(KIND, timeout_seconds=MAX_WAIT_SECONDS + 3600)
def approve(params: ApproveInput) -> ApproveOutput:
    """Pause the flow run until a reviewer answers (or the timeout policy applies).

    Example::

        answer = approve(ApproveInput(client="acme", message="Send this offer?",
                                      data={"amount": 1200}, timeout_seconds=3600))
        if answer.approved: ...
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise PermanentNodeError("approve can only run inside a flow run.")
    flow_run_id = context.flow_run.id
    # One pause per task run: a retry of this task run finds its answer instead of re-asking.
    pause_key = f"approve-{task_run.id}"
    details = {
        "message": params.message,
        "kind": params.kind,
        "choices": params.choices,
        "data": params.data,
        "node": task_run.name,
        "workflow": current_workflow(),
        "on_timeout": params.on_timeout,
    }
    with get_client(sync_client=True) as api:
        api.create_flow_run_input(flow_run_id, DETAILS_KEY_PREFIX + pause_key, json.dumps(details))
    logger = get_run_logger()
    logger.info("Waiting up to %ss for a reviewer: %s", params.timeout_seconds, params.message)
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalAnswer.with_initial_data(description=params.message),
            timeout=params.timeout_seconds,
            poll_interval=params.poll_interval_seconds,
            key=pause_key,
        )
    except FlowPauseTimeout:
        logger.warning("Nobody answered in %ss: %s", params.timeout_seconds, params.on_timeout)
        with get_client(sync_client=True) as api:
            # The run is still Paused on the server; later tasks may only start once it runs.
            api.set_flow_run_state(flow_run_id, Running(), force=True)
        if params.on_timeout == "cancel":
            raise ApprovalCancelled(
                f"Nobody answered '{params.message}' within {params.timeout_seconds}s; "
                "the run stops here."
            ) from None
        approved = params.on_timeout == "approve"
        return ApproveOutput(approved=approved, decision="timed_out")
    return _decide(params, answer)


SPEC = NodeSpec(
    kind=KIND,
    title="Human approval",
    description=(
        "Pause the run until a reviewer approves / rejects, answers in text or picks a choice "
        "(portal or CLI); on timeout approve, reject or cancel."
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
