"""Draft a workflow spec from an English request with an OpenAI-compatible model.

The model gets the node catalog (kinds, descriptions, input schemas) and must answer with a
JSON spec matching a structured-output schema whose ``node`` field is an enum of catalog kinds.
The answer is validated; on problems the model gets them back once to repair; then the spec is
returned, or ``SpecInvalid`` says why not.

Wire: ``POST <base_url>/chat/completions`` with ``response_format={"type": "json_schema", ...}``;
200 with ``choices[0].message.content`` holding the JSON spec.
"""

from __future__ import annotations

import json
from typing import Any

import openai

from agency.errors import SpecInvalid, TransientNodeError
from flows.spec.model import WorkflowSpec, parse_spec
from flows.spec.validate import check_spec
from nodes.catalog import list_nodes

SYSTEM = """You design automation workflows as JSON workflow specs for an agency platform.
Answer with one JSON object only: {"name": slug, "version": "1.0.0", "description": str,
"credentials": {credential_name: credential_kind}, "triggers": ["cron"|"webhook"|"manual"],
"default_cron": str|null, "nodes": [{"id": str, "node": kind, "params": {...}}],
"edges": [{"from": id, "to": id, "when": jinja2 expression or null}]}.
Params may use jinja2 templates over inputs, nodes.<id>.output, item and client.
Every node that needs a credential names one declared under "credentials".
Available nodes (kind, credential kind, description, input JSON schema):
"""


def catalog_prompt() -> str:
    """The system prompt: the rules plus every catalog node."""
    lines = []
    for spec in list_nodes():
        schema = spec.input_schema
        props = {k: v for k, v in schema.get("properties", {}).items() if k != "client"}
        lines.append(
            json.dumps(
                {
                    "kind": spec.kind,
                    "credential_kind": spec.credential_kind,
                    "description": spec.description,
                    "params": props,
                    "required": [r for r in schema.get("required", []) if r != "client"],
                }
            )
        )
    return SYSTEM + "\n".join(lines)


def output_schema() -> dict[str, Any]:
    """Structured-output schema: the spec's schema with ``node`` limited to catalog kinds."""
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    node_def = schema["$defs"]["SpecNode"]["properties"]["node"]
    node_def["enum"] = [n.kind for n in list_nodes()]
    return schema


def _problems(content: str | None) -> tuple[WorkflowSpec | None, list[str]]:
    try:
        data = json.loads(content or "")
    except json.JSONDecodeError as exc:
        return None, [f"the answer is not JSON: {exc.msg}"]
    try:
        spec, root = parse_spec(json.dumps(data, indent=1), "draft")
    except SpecInvalid as exc:
        return None, exc.problems
    problems = check_spec(spec, root, "draft")
    return (None, problems) if problems else (spec, [])


def draft_spec(request: str, client: openai.OpenAI, model: str) -> WorkflowSpec:
    """Ask the model for a spec; repair once with the validation problems; raise if hopeless."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": catalog_prompt()},
        {"role": "user", "content": request},
    ]
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "workflow_spec", "schema": output_schema()},
    }
    problems: list[str] = []
    for _attempt in range(2):
        try:
            answer = client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                response_format=response_format,
            )
        except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError) as exc:
            raise TransientNodeError(
                f"The drafting model is unavailable: {type(exc).__name__}."
            ) from None
        content = answer.choices[0].message.content
        spec, problems = _problems(content)
        if spec is not None:
            return spec
        messages += [
            {"role": "assistant", "content": content or ""},
            {
                "role": "user",
                "content": "That spec has these problems; answer with the "
                "corrected JSON spec only:\n" + "\n".join(problems),
            },
        ]
    raise SpecInvalid(["the model did not produce a valid spec, even after one repair:", *problems])
