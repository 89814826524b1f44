"""The ``log_message`` node: render a jinja2 template and write it to the run's Prefect log."""

from __future__ import annotations

import logging
from typing import Any, Literal

from prefect import get_run_logger
from pydantic import Field, field_validator

from agency.redaction import redact
from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task
from nodes._expr import check_template, render

KIND = "log_message"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class LogMessageInput(NodeInput):
    """One log line."""

    message: str = Field(title="Message", description="jinja2 template of the line.")
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", title="Level", description="Log level."
    )
    context: dict[str, Any] = Field(
        default_factory=dict, title="Context", description="Values the template sees."
    )

    @field_validator("message")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)


class LogMessageOutput(NodeOutput):
    """The line as logged."""

    message: str = Field(title="Message", description="The rendered line.")
    level: str = Field(title="Level", description="Log level used.")


@node_task(KIND, timeout_seconds=30)
def log_message(params: LogMessageInput) -> LogMessageOutput:
    """Render ``message`` over ``context`` and log it at ``level`` (known secrets masked).

    Example::

        log_message(LogMessageInput(client="acme", message="{{ n }} leads", context={"n": 3}))
    """
    text = redact(render(params.message, params.context, "message template"))
    get_run_logger().log(_LEVELS[params.level], "%s", text)
    return LogMessageOutput(message=text, level=params.level)


SPEC = NodeSpec(
    kind=KIND,
    title="Log message",
    description="Render a jinja2 template over the run's data and write it to the run's log.",
    input_model=LogMessageInput,
    output_model=LogMessageOutput,
    credential_kind=None,
    task=log_message,
    example={"client": "acme", "message": "{{ count }} new leads", "context": {"count": 3}},
)
