"""The node catalog: every node as a ``NodeSpec``, the single source for the spec runner, the
portal and the NL drafter.

Example::

    spec = get_node("http_request")
    spec.input_schema["properties"]["url"]
    result = spec.task(spec.input_model.model_validate(params))
"""

from __future__ import annotations

from agency.errors import NotFound
from nodes._base import NodeSpec
from nodes.http_request import HttpRequestInput, HttpRequestOutput, http_request
from nodes.llm import LlmInput, LlmOutput, llm
from nodes.send_email import SendEmailInput, SendEmailOutput, send_email

CATALOG: dict[str, NodeSpec] = {
    spec.kind: spec
    for spec in (
        NodeSpec(
            kind="http_request",
            title="HTTP request",
            description=(
                "Send one HTTP request (any method, headers, query, JSON body), optionally "
                "authenticated with an http_auth credential; returns status, headers and body."
            ),
            input_model=HttpRequestInput,
            output_model=HttpRequestOutput,
            credential_kind="http_auth",
            task=http_request,
        ),
        NodeSpec(
            kind="send_email",
            title="Send email",
            description=(
                "Send an email over the client's SMTP account: subject, text and HTML bodies "
                "are jinja2 templates rendered over a context; attachments allowed."
            ),
            input_model=SendEmailInput,
            output_model=SendEmailOutput,
            credential_kind="smtp",
            task=send_email,
        ),
        NodeSpec(
            kind="llm",
            title="LLM",
            description=(
                "Ask an OpenAI-compatible chat model one prompt; returns the reply as text or "
                "parsed JSON, with token usage (recorded for cost reporting)."
            ),
            input_model=LlmInput,
            output_model=LlmOutput,
            credential_kind="openai",
            task=llm,
        ),
    )
}


def get_node(kind: str) -> NodeSpec:
    """The spec of node ``kind``; raises ``NotFound`` naming the known kinds."""
    try:
        return CATALOG[kind]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise NotFound(f"Unknown node kind '{kind}'. Known kinds: {known}.") from None


def list_nodes() -> list[NodeSpec]:
    """Every node spec, sorted by kind."""
    return [CATALOG[kind] for kind in sorted(CATALOG)]
