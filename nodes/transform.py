"""The ``transform`` node: reshape the run's data with a jinja2 template or a JMESPath query.

Both run without Python ``eval``: templates in jinja2's sandbox, queries through JMESPath.
``template`` renders text (``output="json"`` parses the rendered text as JSON); ``expression``
returns whatever the query selects.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agency.errors import PermanentNodeError
from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task
from nodes._expr import check_query, check_template, query, render

KIND = "transform"


class TransformInput(NodeInput):
    """Data and exactly one of ``template`` / ``expression``."""

    data: Any = Field(
        default=None,
        title="Data",
        description="The value to transform; templates see it as `data` (and its keys).",
    )
    template: str | None = Field(
        default=None, title="Template", description="jinja2 template rendered over the data."
    )
    expression: str | None = Field(
        default=None, title="Expression", description="JMESPath query over the data."
    )
    output: Literal["text", "json"] = Field(
        default="text",
        title="Output",
        description="For templates: json parses the rendered text as JSON.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return check_template(value) if value is not None else None

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return check_query(value) if value is not None else None

    @model_validator(mode="after")
    def _one_of(self) -> TransformInput:
        if (self.template is None) == (self.expression is None):
            raise ValueError("give exactly one of template or expression")
        return self


class TransformOutput(NodeOutput):
    """The transformed value."""

    value: Any = Field(title="Value", description="Rendered text, parsed JSON or query result.")


@node_task(KIND, timeout_seconds=60)
def transform(params: TransformInput) -> TransformOutput:
    """Render the template or run the query over ``data``.

    Example::

        transform(TransformInput(client="acme", data={"items": [{"n": 1}, {"n": 2}]},
                                 expression="items[].n")).value   # [1, 2]
    """
    if params.expression is not None:
        return TransformOutput(value=query(params.expression, params.data))
    context = dict(params.data) if isinstance(params.data, dict) else {}
    context["data"] = params.data
    text = render(params.template or "", context)
    if params.output == "text":
        return TransformOutput(value=text)
    try:
        return TransformOutput(value=json.loads(text))
    except json.JSONDecodeError as exc:
        raise PermanentNodeError(
            f"The rendered template is not valid JSON ({exc.msg} at column {exc.colno}): "
            f"{text[:200]!r}"
        ) from None


SPEC = NodeSpec(
    kind=KIND,
    title="Transform",
    description=(
        "Reshape data with a sandboxed jinja2 template (text or JSON) or a JMESPath query; "
        "never Python eval."
    ),
    input_model=TransformInput,
    output_model=TransformOutput,
    credential_kind=None,
    task=transform,
    example={
        "client": "acme",
        "data": {"leads": [{"email": "a@example.com", "score": 91}]},
        "expression": "leads[?score > `80`].email",
    },
)
