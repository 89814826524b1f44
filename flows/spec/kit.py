"""Import Inngest Workflow Kit instances as workflow specs.

A Workflow Kit instance is ``{"name", "description"?, "actions": [{"id", "kind", "name"?,
"inputs"?}], "edges": [{"from", "to"}]}`` where ``"$source"`` is the triggering event. Inputs may
hold ``!ref($.event.<path>)`` references to the event; they become ``{{ inputs.<path> }}``
templates (the event is the spec's inputs). The kit's stub kinds map onto our nodes.
"""

from __future__ import annotations

import re
from typing import Any

from agency.errors import SpecInvalid
from flows.spec.model import WorkflowSpec
from nodes.catalog import get_node

# kit kind -> (our node kind, kit input name -> our param name)
KIT_KINDS: dict[str, tuple[str, dict[str, str]]] = {
    "log_message": ("log_message", {"message": "message", "text": "message", "level": "level"}),
    "delay": ("delay", {"seconds": "seconds", "duration": "seconds"}),
    "http_request": (
        "http_request",
        {
            "url": "url",
            "method": "method",
            "headers": "headers",
            "body": "json_body",
            "query": "query",
        },
    ),
    "transform_data": (
        "transform",
        {"template": "template", "expression": "expression", "data": "data", "output": "output"},
    ),
    "notify": (
        "notify",
        {"message": "text", "text": "text", "channel": "channel", "credential": "credential"},
    ),
}
_REF = re.compile(r"!ref\(\$\.event\.([A-Za-z0-9_.\[\]'\"]+)\)")
_WHOLE_REF = re.compile(r"^\s*!ref\(\$\.event\.([A-Za-z0-9_.\[\]'\"]+)\)\s*$")


def _translate(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _translate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_translate(v) for v in value]
    if not isinstance(value, str) or "!ref(" not in value:
        return value
    if "!ref($.state" in value or "!ref($.output" in value:
        raise ValueError("only !ref($.event...) references can be imported")
    whole = _WHOLE_REF.match(value)
    if whole:
        return "{{ inputs." + whole.group(1) + " }}"
    return _REF.sub(lambda m: "{{ inputs." + m.group(1) + " }}", value)


def _node_id(action_id: str, kind: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", str(action_id))
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else f"{kind}_{cleaned}"


def import_kit(instance: dict[str, Any], name: str | None = None) -> WorkflowSpec:
    """Turn a Workflow Kit instance into a spec; raise ``SpecInvalid`` listing each problem."""
    problems: list[str] = []
    actions = instance.get("actions")
    if not isinstance(actions, list) or not actions:
        raise SpecInvalid(["actions: a Workflow Kit instance needs a non-empty actions list"])
    ids: dict[str, str] = {}
    nodes: list[dict[str, Any]] = []
    credentials: dict[str, str] = {}
    for i, action in enumerate(actions):
        kind = action.get("kind") if isinstance(action, dict) else None
        if kind not in KIT_KINDS:
            problems.append(
                f"actions[{i}].kind: unknown Workflow Kit kind {kind!r} "
                f"(supported: {', '.join(sorted(KIT_KINDS))})"
            )
            continue
        node_kind, renames = KIT_KINDS[kind]
        node_id = _node_id(action.get("id", i), kind)
        ids[str(action.get("id", i))] = node_id
        params: dict[str, Any] = {}
        for key, value in (action.get("inputs") or {}).items():
            try:
                params[renames.get(key, key)] = _translate(value)
            except ValueError as exc:
                problems.append(f"actions[{i}].inputs.{key}: {exc}")
        entry = get_node(node_kind)
        field = entry.input_model.model_fields.get("credential")
        if entry.credential_kind and field is not None and field.is_required():
            credential = params.setdefault("credential", node_kind)
            credentials.setdefault(str(credential), entry.credential_kind)
        nodes.append(
            {"id": node_id, "node": node_kind, "params": params, "description": action.get("name")}
        )
    edges = []
    for j, edge in enumerate(instance.get("edges") or []):
        source, target = str(edge.get("from")), str(edge.get("to"))
        if source == "$source":
            continue
        if source not in ids or target not in ids:
            problems.append(f"edges[{j}]: dangling edge {source} -> {target}")
            continue
        edges.append({"from": ids[source], "to": ids[target]})
    if problems:
        raise SpecInvalid(problems)
    slug = re.sub(r"[^a-z0-9_-]+", "-", (name or instance.get("name") or "kit-workflow").lower())
    return WorkflowSpec.model_validate(
        {
            "name": slug.strip("-")[:63] or "kit-workflow",
            "description": instance.get("description"),
            "credentials": credentials,
            "triggers": ["manual", "webhook"],
            "nodes": nodes,
            "edges": edges,
        }
    )
