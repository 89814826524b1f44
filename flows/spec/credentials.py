"""Credential bindings: which client credential (kind + name) a node's ``credential`` means.

A node's ``credential`` param names an alias declared under the spec's ``credentials:``; the
binding gives the kind and the client's credential name (``default`` unless told). A node that
needs a credential and names none uses the spec's only binding of its kind.
"""

from __future__ import annotations

from typing import Any

from blocks.kinds import OAUTH_KINDS
from flows.spec.model import CredentialBinding, WorkflowSpec
from flows.spec.templates import is_template
from nodes._base import NodeSpec

# nodes that accept another credential kind besides their catalog one (passed as ``kind/name``)
ALTERNATIVE_KINDS: dict[str, tuple[str, ...]] = {
    "notify": ("webhook_signing", "slack"),
    "send_email": ("google", "microsoft"),
    "http_request": OAUTH_KINDS,
    "google_sheets_append": (),
}


def accepted_kinds(entry: NodeSpec) -> tuple[str, ...]:
    """Credential kinds node ``entry`` accepts (none when it takes no credential)."""
    if entry.credential_kind is None:
        return ()
    return (entry.credential_kind, *ALTERNATIVE_KINDS.get(entry.kind, ()))


def bindings_for(spec: WorkflowSpec, kinds: tuple[str, ...]) -> dict[str, CredentialBinding]:
    """The spec's bindings of any of ``kinds``, by alias."""
    return {a: b for a, b in spec.credentials.items() if b.kind in kinds}


def _reference(entry: NodeSpec, binding: CredentialBinding) -> str:
    """The node's ``credential`` value for ``binding``: its name for the node's own kind,
    ``kind/name`` for another kind the node accepts (e.g. ``google/default`` for send_email)."""
    own = binding.kind == entry.credential_kind
    return binding.name if own else f"{binding.kind}/{binding.name}"


def bind_credential(spec: WorkflowSpec, entry: NodeSpec, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``credential`` turned from an alias into the client's credential name
    (filled in from the only binding of the node's kind when the node needs one and names none).
    A rendered name that is no alias is kept as it is."""
    kinds = accepted_kinds(entry)
    if not kinds or "credential" not in entry.input_model.model_fields:
        return params
    alias = params.get("credential")
    if alias is None:
        candidates = bindings_for(spec, kinds)
        if entry.input_model.model_fields["credential"].is_required() and len(candidates) == 1:
            return {**params, "credential": _reference(entry, next(iter(candidates.values())))}
        return params
    if isinstance(alias, str) and not is_template(alias) and alias in spec.credentials:
        return {**params, "credential": _reference(entry, spec.credentials[alias])}
    return params


__all__ = ["ALTERNATIVE_KINDS", "accepted_kinds", "bind_credential", "bindings_for"]
