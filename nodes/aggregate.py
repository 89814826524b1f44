"""The ``aggregate`` node: reduce a list to one value.

``concat`` joins items as text, ``count`` counts them, ``sum`` / ``avg`` / ``min`` / ``max``
work on numbers, and ``summarize`` asks the ``llm`` node (the client's ``openai`` credential)
for a summary of the items. ``field`` picks a key (dotted path) of each item first.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from agency.errors import PermanentNodeError
from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task
from nodes.llm import LlmInput, TokenUsage, llm

KIND = "aggregate"
CREDENTIAL_KIND = "openai"
_SUMMARY_PROMPT = "Summarise the following items in a short paragraph:"

Operation = Literal["concat", "count", "sum", "avg", "min", "max", "summarize"]


class AggregateInput(NodeInput):
    """A list and how to reduce it."""

    items: list[Any] = Field(title="Items", description="The list to reduce.")
    operation: Operation = Field(title="Operation", description="How to reduce the list.")
    field: str | None = Field(
        default=None,
        title="Field",
        description="Dotted key to take from each item first, e.g. `order.total`.",
    )
    separator: str = Field(default="\n", title="Separator", description="For concat.")
    credential: str | None = Field(
        default=None,
        title="Credential",
        description="The client's openai credential; required for summarize.",
    )
    instructions: str = Field(
        default=_SUMMARY_PROMPT, title="Instructions", description="For summarize."
    )
    model: str | None = Field(default=None, title="Model", description="For summarize.")

    @model_validator(mode="after")
    def _credential_for_summary(self) -> AggregateInput:
        if self.operation == "summarize" and not self.credential:
            raise ValueError("credential is required for operation summarize")
        return self


class AggregateOutput(NodeOutput):
    """The reduced value."""

    value: Any = Field(title="Value", description="The result (null for avg/min/max of none).")
    count: int = Field(title="Count", description="How many items were reduced.")
    usage: TokenUsage | None = Field(
        default=None, title="Usage", description="LLM tokens, for summarize."
    )


def _pick(item: Any, path: str) -> Any:
    value = item
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise PermanentNodeError(f"Item {str(item)[:100]!r} has no field '{path}'.")
    return value


def _numbers(values: list[Any], operation: str) -> list[float]:
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int | float)]
    if bad:
        raise PermanentNodeError(f"{operation} needs numbers; got {str(bad[0])[:100]!r}.")
    return values


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@node_task(KIND, timeout_seconds=300)
def aggregate(params: AggregateInput) -> AggregateOutput:
    """Reduce ``items`` with ``operation``.

    Example::

        aggregate(AggregateInput(client="acme", items=[{"total": 5}, {"total": 7}],
                                 field="total", operation="sum")).value   # 12
    """
    values = [_pick(i, params.field) for i in params.items] if params.field else params.items
    count = len(values)
    op = params.operation
    if op == "count":
        return AggregateOutput(value=count, count=count)
    if op == "concat":
        return AggregateOutput(value=params.separator.join(_text(v) for v in values), count=count)
    if op == "summarize":
        prompt = params.instructions + "\n\n" + "\n".join(f"- {_text(v)}" for v in values)
        reply = llm.fn(
            LlmInput(
                client=params.client,
                credential=params.credential or "",
                prompt=prompt,
                model=params.model,
            )
        )
        return AggregateOutput(value=reply.text, count=count, usage=reply.usage)
    numbers = _numbers(values, op)
    if op == "sum":
        return AggregateOutput(value=sum(numbers), count=count)
    if not numbers:
        return AggregateOutput(value=None, count=0)
    if op == "avg":
        return AggregateOutput(value=sum(numbers) / count, count=count)
    return AggregateOutput(value=min(numbers) if op == "min" else max(numbers), count=count)


SPEC = NodeSpec(
    kind=KIND,
    title="Aggregate",
    description=(
        "Reduce a list: concat, count, sum, avg, min, max, or an LLM summary (summarize, "
        "through the llm node with an openai credential)."
    ),
    input_model=AggregateInput,
    output_model=AggregateOutput,
    credential_kind=CREDENTIAL_KIND,
    task=aggregate,
    example={
        "client": "acme",
        "items": [{"total": 5}, {"total": 7}],
        "field": "total",
        "operation": "sum",
    },
)
