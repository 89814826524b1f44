"""The node catalog: every node's ``NodeSpec``, the single source for the spec runner, the
portal and the NL drafter. Each node module declares its own ``SPEC``; registering a new node
means adding it here.

Example::

    spec = get_node("http_request")
    spec.input_schema["properties"]["url"]
    output = spec.task(spec.input_model.model_validate(params))
"""

from __future__ import annotations

from agency.errors import NotFound
from nodes._base import NodeSpec
from nodes.http_request import SPEC as HTTP_REQUEST
from nodes.llm import SPEC as LLM
from nodes.send_email import SPEC as SEND_EMAIL

CATALOG: dict[str, NodeSpec] = {spec.kind: spec for spec in (HTTP_REQUEST, SEND_EMAIL, LLM)}


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
