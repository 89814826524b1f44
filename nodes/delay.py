"""The ``delay`` node: wait a number of seconds, then continue (``time.sleep``, no I/O)."""

from __future__ import annotations

import time

from pydantic import Field

from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task

KIND = "delay"
MAX_SECONDS = 3600.0


class DelayInput(NodeInput):
    """How long to wait."""

    seconds: float = Field(
        ge=0, le=MAX_SECONDS, title="Seconds", description="How long to wait (at most one hour)."
    )


class DelayOutput(NodeOutput):
    """How long the node actually waited."""

    waited_seconds: float = Field(title="Waited", description="Seconds actually waited.")


@node_task(KIND, timeout_seconds=MAX_SECONDS + 60)
def delay(params: DelayInput) -> DelayOutput:
    """Sleep ``seconds``; for longer waits schedule the next step instead.

    Example::

        delay(DelayInput(client="acme", seconds=30))
    """
    start = time.monotonic()
    time.sleep(params.seconds)
    return DelayOutput(waited_seconds=round(time.monotonic() - start, 3))


SPEC = NodeSpec(
    kind=KIND,
    title="Delay",
    description="Wait a number of seconds (up to one hour) before the next step.",
    input_model=DelayInput,
    output_model=DelayOutput,
    credential_kind=None,
    task=delay,
    example={"client": "acme", "seconds": 30},
)
