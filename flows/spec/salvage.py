"""A best-effort spec from a document that fails the schema, so the catalog checks can still
report every other problem in the same pass.

Each node, edge and credential binding is validated alone; one that fails keeps the fields that
are fine, and a field that is itself wrong becomes ``None`` (the checker skips it: the schema
problem already names it). The result is only ever handed to the checker, never run.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flows.spec.model import CredentialBinding, SpecEdge, SpecNode, WorkflowSpec

M = TypeVar("M", bound=BaseModel)
_PARTS = ("nodes", "edges", "credentials")
_PLACEHOLDER_NODE = {"id": "x", "node": "x"}


def _bad_keys(model: type[BaseModel], raw: dict[str, Any]) -> set[Any] | None:
    """Top-level keys of ``raw`` that fail ``model`` (None when it validates)."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        return {err["loc"][0] for err in exc.errors() if err["loc"]}
    return None


def _part(model: type[M], raw: Any) -> M:
    """``raw`` validated as ``model``, else built from its good fields (bad ones ``None``)."""
    raw = raw if isinstance(raw, dict) else {}
    if model is SpecEdge:
        raw = SpecEdge._yaml_on(raw)  # type: ignore[operator]
    bad = _bad_keys(model, raw)
    if bad is None:
        return model.model_validate(raw)
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in raw and key not in bad:
            values[name] = raw[key]
        elif field.is_required() or key in bad:
            values[name] = None
        else:
            values[name] = field.get_default(call_default_factory=True)
    return model.model_construct(**values)


def salvage(data: dict[str, Any]) -> WorkflowSpec:
    """A ``WorkflowSpec`` holding every part of ``data`` that can still be checked."""
    raw_nodes, raw_edges = data.get("nodes"), data.get("edges")
    nodes = [_part(SpecNode, n) for n in raw_nodes] if isinstance(raw_nodes, list) else []
    edges = [_part(SpecEdge, e) for e in raw_edges] if isinstance(raw_edges, list) else []
    credentials: dict[str, CredentialBinding] = {}
    raw_credentials = data.get("credentials")
    if isinstance(raw_credentials, dict):
        for alias, binding in raw_credentials.items():
            raw = {"kind": binding, "name": alias} if isinstance(binding, str) else binding
            credentials[str(alias)] = _part(CredentialBinding, raw)
    top = {k: v for k, v in data.items() if k not in _PARTS}
    bad = _bad_keys(WorkflowSpec, {**top, "nodes": [_PLACEHOLDER_NODE]}) or set()
    good = {k: v for k, v in top.items() if k not in bad}
    base = WorkflowSpec.model_validate({"name": "salvaged", **good, "nodes": [_PLACEHOLDER_NODE]})
    return base.model_copy(update={"nodes": nodes, "edges": edges, "credentials": credentials})


__all__ = ["salvage"]
