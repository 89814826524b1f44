"""The declarative workflow spec: nodes, edges, inputs and declared credentials.

Format (YAML or JSON), see ``docs/specs.md``::

    name: lead-intake
    version: 1.2.0
    inputs: {type: object, properties: {email: {type: string}}, required: [email]}
    credentials: {crm: {kind: http_auth, name: crm}, llm: {kind: openai}}   # name: default
    nodes:
      - {id: enrich, node: http_request, params: {url: "https://crm/?q={{ inputs.email }}",
                                                   credential: crm}}
      - {id: per_item, node: llm, map: "{{ nodes.enrich.output.body.items }}",
         params: {prompt: "Summarise {{ item }}", credential: llm}}
      - {id: alert, node: notify, params: {text: "CRM down: {{ nodes.enrich.error.message }}"}}
    edges:
      - {from: enrich, to: per_item, when: "nodes.enrich.output.status == 200"}
      - {from: enrich, to: alert, on: failed}

The full format is documented in ``docs/specs.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agency.errors import SpecInvalid
from flows.spec.problems import Loc, Problem, render_all

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DEFAULT_CREDENTIAL_NAME = "default"
Outcome = Literal["completed", "failed", "always"]


class CredentialBinding(BaseModel):
    """A credential the spec's nodes use: the client's credential of ``kind`` named ``name``."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="Credential kind, e.g. openai, smtp, slack_webhook.")
    name: str = Field(
        default=DEFAULT_CREDENTIAL_NAME,
        min_length=1,
        description="Name of the client's credential of that kind (default: `default`).",
    )


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
    retries: int | None = Field(
        default=None, ge=0, le=10, description="Attempts after a transient failure (node default)."
    )
    retry_delay_seconds: float | None = Field(
        default=None, ge=0, le=600, description="Seconds between attempts (node default backoff)."
    )
    description: str | None = None


class SpecEdge(BaseModel):
    """``from`` → ``to``, taken when ``from`` ends with outcome ``on`` and ``when`` is true.

    ``on: completed`` (default) follows success, ``on: failed`` a failure after the node's retries
    (which then no longer fails the run), ``on: always`` either.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from")
    to: str
    on: Outcome = Field(default="completed", description="Outcome of `from` that takes the edge.")
    when: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads an unquoted `on` key as the boolean true
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class WorkflowSpec(BaseModel):
    """A whole workflow: run as one Prefect flow, each node one task run named by its id."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SLUG_PATTERN, description="Workflow slug.")
    version: str = Field(default="0.1.0", pattern=r"^\d+\.\d+\.\d+$")
    title: str | None = None
    description: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict, description="JSON schema of inputs.")
    credentials: dict[str, CredentialBinding] = Field(
        default_factory=dict,
        description="Alias the nodes' `credential:` params use → {kind, name}; the shorthand "
        "`alias: kind` binds the client's credential named like the alias.",
    )
    triggers: list[str] = Field(default_factory=lambda: ["manual"])
    default_cron: str | None = None
    retries: int = Field(default=0, ge=0, le=5, description="Flow-level retries (durable).")
    nodes: list[SpecNode] = Field(min_length=1)
    edges: list[SpecEdge] = Field(default_factory=list)

    @field_validator("credentials", mode="before")
    @classmethod
    def _credential_shorthand(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            alias: {"kind": b, "name": alias} if isinstance(b, str) else b
            for alias, b in value.items()
        }

    def node(self, node_id: str) -> SpecNode:
        return next(n for n in self.nodes if n.id == node_id)

    def failure_handled(self, node_id: str) -> bool:
        """True when an ``on: failed`` or ``on: always`` edge leaves ``node_id``."""
        return any(e.source == node_id and e.on != "completed" for e in self.edges)


def load_document(text: str, source: str = "<spec>") -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse YAML or JSON text into a mapping and its YAML tree (for line numbers).

    Raises ``SpecInvalid`` when the text is not YAML/JSON or not a mapping.
    """
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
    return data, root


def schema_problems(exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
    """One problem per pydantic error, with a fix hint where the error type has one."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = (*prefix, *err["loc"])
        hint = _HINTS.get(err["type"], "see docs/specs.md for the spec format")
        problems.append(Problem(loc, err["msg"], hint))
    return problems


_HINTS = {
    "extra_forbidden": "remove it (see docs/specs.md for the keys each part takes)",
    "missing": "add it",
    "string_pattern_mismatch": "ids: letters, digits and _; names: lowercase slug with - or _",
    "literal_error": "use one of the values listed",
}


def parse_spec(text: str, source: str = "<spec>") -> tuple[WorkflowSpec, yaml.Node | None]:
    """Parse YAML or JSON text into a spec, checking its shape only (not the catalog).

    Raises ``SpecInvalid`` with located schema problems; ``flows.spec.validate.check_text``
    reports schema and catalog problems together.
    """
    data, root = load_document(text, source)
    try:
        return WorkflowSpec.model_validate(data), root
    except ValidationError as exc:
        raise SpecInvalid(render_all(schema_problems(exc), source, root)) from None


def read_spec_text(path: Path) -> str:
    """The text of a spec file; ``SpecInvalid`` when it cannot be read."""
    try:
        return path.read_text()
    except OSError as exc:
        raise SpecInvalid([f"{path}: cannot read: {exc.strerror}"]) from None


def load_spec_file(path: Path) -> tuple[WorkflowSpec, yaml.Node | None]:
    """Read and parse a ``.yaml``/``.yml``/``.json`` spec file (shape only)."""
    return parse_spec(read_spec_text(path), str(path))


def spec_to_dict(spec: WorkflowSpec) -> dict[str, Any]:
    """JSON-safe dict of a spec (edges use ``from``), leaving out what is at its default."""
    data = json.loads(spec.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True))
    data.setdefault("version", spec.version)
    return data


__all__ = [
    "CredentialBinding",
    "SpecEdge",
    "SpecNode",
    "WorkflowSpec",
    "load_document",
    "load_spec_file",
    "parse_spec",
    "read_spec_text",
    "schema_problems",
    "spec_to_dict",
]
