"""The declarative workflow spec: nodes, edges, inputs and declared credentials.

Format (YAML or JSON), see ``../shared/DESIGN.md``::

    name: lead-intake
    version: 1.2.0
    inputs: {type: object, properties: {email: {type: string}}, required: [email]}
    credentials: {crm: http_auth, openai: openai}
    nodes:
      - {id: enrich, node: http_request, params: {url: "https://crm/?q={{ inputs.email }}",
                                                   credential: crm}}
      - {id: per_item, node: llm, map: "{{ nodes.enrich.output.body.items }}",
         params: {prompt: "Summarise {{ item }}", credential: openai}}
    edges:
      - {from: enrich, to: per_item, when: "nodes.enrich.output.status == 200"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agency.errors import SpecInvalid

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class SpecNode(BaseModel):
    """One step: a catalog node kind with params (values may be jinja2 templates)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", description="Unique step id.")
    node: str = Field(description="Catalog node kind, e.g. http_request.")
    params: dict[str, Any] = Field(default_factory=dict, description="The node's input fields.")
    map: str | None = Field(
        default=None, description="Template yielding a list: one task run per element (`item`)."
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Parallel runs for `map`.")
    description: str | None = None


class SpecEdge(BaseModel):
    """``from`` → ``to``, taken only when the optional ``when`` expression is true."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from")
    to: str
    when: str | None = None


class WorkflowSpec(BaseModel):
    """A whole workflow: run as one Prefect flow, each node one task run named by its id."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SLUG_PATTERN, description="Workflow slug.")
    version: str = Field(default="0.1.0", pattern=r"^\d+\.\d+\.\d+$")
    title: str | None = None
    description: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict, description="JSON schema of inputs.")
    credentials: dict[str, str] = Field(
        default_factory=dict, description="Credential name → kind the nodes may use."
    )
    triggers: list[str] = Field(default_factory=lambda: ["manual"])
    default_cron: str | None = None
    retries: int = Field(default=0, ge=0, le=5, description="Flow-level retries (durable).")
    nodes: list[SpecNode] = Field(min_length=1)
    edges: list[SpecEdge] = Field(default_factory=list)

    def node(self, node_id: str) -> SpecNode:
        return next(n for n in self.nodes if n.id == node_id)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the YAML node at pydantic location ``loc``, best effort."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            break
        if node is None:
            break
    return None if root is None else (node or root).start_mark.line + 1


def format_loc(loc: tuple[Any, ...]) -> str:
    """``("nodes", 2, "params")`` → ``nodes[2].params``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "spec"


def parse_spec(text: str, source: str = "<spec>") -> tuple[WorkflowSpec, yaml.Node | None]:
    """Parse YAML or JSON text into a spec; raise ``SpecInvalid`` with located problems."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise SpecInvalid(
            [f"{where}: not valid YAML/JSON: {getattr(exc, 'problem', exc)}"]
        ) from None
    if not isinstance(data, dict):
        raise SpecInvalid([f"{source}:1: a spec must be a mapping with name, nodes and edges"])
    try:
        return WorkflowSpec.model_validate(data), root
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            line = _line_of(root, tuple(err["loc"]))
            problems.append(f"{source}:{line or 1}: {format_loc(tuple(err['loc']))}: {err['msg']}")
        raise SpecInvalid(problems) from None


def load_spec_file(path: Path) -> tuple[WorkflowSpec, yaml.Node | None]:
    """Read and parse a ``.yaml``/``.yml``/``.json`` spec file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecInvalid([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse_spec(text, str(path))


def spec_to_dict(spec: WorkflowSpec) -> dict[str, Any]:
    """JSON-safe dict of a spec (edges use ``from``)."""
    return json.loads(spec.model_dump_json(by_alias=True, exclude_none=True))
