"""Draft a workflow spec from an English request with an OpenAI-compatible model.

The model gets the node catalog (kinds, descriptions, input schemas) and is asked for a JSON
spec matching a structured-output schema whose ``node`` field is an enum of catalog kinds. The
answer may be JSON or YAML, bare or in a ``` code fence; its name is made a valid slug. It is
validated (schema and catalog together); on problems the model gets every one of them back once
to repair; then the spec is returned, or ``SpecInvalid`` says why not.

Wire: ``POST <base_url>/chat/completions`` with ``response_format={"type": "json_schema", ...}``;
200 with ``choices[0].message.content`` holding the JSON spec.
"""

from __future__ import annotations

import json
import re
from typing import Any

import openai

from agency.errors import SpecInvalid, TransientNodeError
from flows.spec.model import WorkflowSpec
from flows.spec.validate import check_text
from nodes.catalog import list_nodes

SYSTEM = """You design automation workflows as JSON workflow specs for an agency platform.
Answer with one JSON object only: {"name": slug, "version": "1.0.0", "description": str,
"credentials": {alias: {"kind": credential_kind, "name": "default"}},
"triggers": ["cron"|"webhook"|"manual"], "default_cron": str|null,
"nodes": [{"id": str, "node": kind, "params": {...}, "retries": int|null}],
"edges": [{"from": id, "to": id, "on": "completed"|"failed"|"always",
"when": jinja2 expression or null}]}.
Params may use jinja2 templates over inputs, nodes.<id>.output, nodes.<id>.error, item and
client. An edge with "on": "failed" runs its target when the source node fails (e.g. a site is
down); the failure is then in nodes.<id>.error.message / .status_code.
Every node that needs a credential names an alias declared under "credentials".
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


_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n(.*?)```", re.DOTALL)


def answer_text(content: str | None) -> str:
    """The spec text of an answer: the first ``` fenced block if there is one, else all of it."""
    content = content or ""
    fenced = _FENCE.search(content)
    return (fenced.group(1) if fenced else content).strip()


def slug(name: Any) -> str:
    """A valid spec name from whatever the model called the workflow."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", str(name or "").lower()).strip("-_")[:63].strip("-_")
    return cleaned or "drafted-workflow"


def _problems(content: str | None) -> tuple[WorkflowSpec | None, list[str]]:
    """The spec in an answer and every problem with it (schema and catalog together)."""
    text = answer_text(content)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            return None, [f"the answer is neither JSON nor YAML: {exc}"]
    if not isinstance(data, dict):
        return None, [
            "the answer is not JSON or YAML holding a spec (an object with name and nodes)"
        ]
    data["name"] = slug(data.get("name"))
    return check_text(json.dumps(data, indent=1), "draft")


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
                "content": f"That spec has {len(problems)} problem(s); fix every one and "
                "answer with the corrected JSON spec only:\n" + "\n".join(problems),
            },
        ]
    raise SpecInvalid(["the model did not produce a valid spec, even after one repair:", *problems])
