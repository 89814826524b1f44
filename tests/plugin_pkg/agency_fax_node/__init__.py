"""The ``fax`` node: a plugin node shipped outside the platform (it only counts pages)."""

from __future__ import annotations

from pydantic import Field

from nodes import NodeInput, NodeOutput, NodeSpec, node_task

__all__ = ["SPEC", "FaxInput", "FaxOutput", "fax"]


class FaxInput(NodeInput):
    """A fax to send."""

    number: str = Field(title="Number", description="Fax number.")
    text: str = Field(title="Text", description="What to send.")


class FaxOutput(NodeOutput):
    """What was sent."""

    pages: int = Field(title="Pages", description="Pages sent.")


@node_task("fax", timeout_seconds=60)
def fax(params: FaxInput) -> FaxOutput:
    """Pretend to send a fax: one page per 1000 characters."""
    return FaxOutput(pages=len(params.text) // 1000 + 1)


SPEC = NodeSpec(
    kind="fax",
    title="Fax",
    description="Send a fax (example plugin node).",
    input_model=FaxInput,
    output_model=FaxOutput,
    credential_kind=None,
    task=fax,
    example={"client": "acme", "number": "+33 1 23 45 67 89", "text": "Hello"},
)
