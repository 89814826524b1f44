"""The ``route`` node: pick the branch whose condition holds, in order, else the default.

Conditions are jinja2 expressions evaluated in a sandbox over ``data`` (never Python ``eval``),
e.g. ``score >= 80 and country in ["FR", "DE"]``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agency.errors import PermanentNodeError
from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task
from nodes._expr import check_condition, holds

KIND = "route"


class RouteCase(BaseModel):
    """A branch and the condition that selects it."""

    model_config = ConfigDict(extra="forbid")

    branch: str = Field(min_length=1, title="Branch", description="Name of the branch.")
    when: str = Field(title="When", description="Condition over the data, e.g. `score >= 80`.")

    @field_validator("when")
    @classmethod
    def _condition(cls, value: str) -> str:
        return check_condition(value)


class RouteInput(NodeInput):
    """The data and the cases, tried in order."""

    data: dict[str, Any] = Field(
        default_factory=dict, title="Data", description="Names the conditions can use."
    )
    cases: list[RouteCase] = Field(
        min_length=1, title="Cases", description="Branches with conditions, first match wins."
    )
    default: str | None = Field(
        default=None,
        title="Default branch",
        description="Branch taken when no condition holds; without one that is an error.",
    )

    @model_validator(mode="after")
    def _unique(self) -> RouteInput:
        names = [c.branch for c in self.cases]
        if len(set(names)) != len(names):
            raise ValueError("branch names must be unique")
        return self


class RouteOutput(NodeOutput):
    """The branch taken."""

    branch: str = Field(title="Branch", description="Name of the branch taken.")
    matched: bool = Field(
        title="Matched", description="True when a condition held, false for the default."
    )


@node_task(KIND, timeout_seconds=30)
def route(params: RouteInput) -> RouteOutput:
    """Return the first case whose ``when`` is true over ``data``, else ``default``.

    Example::

        route(RouteInput(client="acme", data={"score": 91},
                         cases=[{"branch": "hot", "when": "score >= 80"}], default="cold")).branch
    """
    for case in params.cases:
        if holds(case.when, params.data):
            return RouteOutput(branch=case.branch, matched=True)
    if params.default is None:
        raise PermanentNodeError(
            "No route condition held and no default branch is set: "
            + "; ".join(f"{c.branch}: {c.when}" for c in params.cases)
        )
    return RouteOutput(branch=params.default, matched=False)


SPEC = NodeSpec(
    kind=KIND,
    title="Route",
    description=(
        "Choose a branch: the first case whose sandboxed condition holds over the data, "
        "else the default branch."
    ),
    input_model=RouteInput,
    output_model=RouteOutput,
    credential_kind=None,
    task=route,
    example={
        "client": "acme",
        "data": {"score": 91},
        "cases": [{"branch": "hot", "when": "score >= 80"}],
        "default": "cold",
    },
)
