"""Credential settings as choices among the client's own credentials, in the client's words.

A settings field that names a credential (``smtp_credential``...) is never a text box: with one
matching credential it is bound by itself, with several the client picks by title and name,
with none the page says what to add under Credentials. With ``slots``, an empty place under each
choice is kept for its problems (:func:`portal.components.forms.show_field_errors`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import streamlit as st

from blocks.words import kind_words
from flows.manifest import CredentialRequirement, WorkflowManifest


def _reference(requirement: CredentialRequirement, kind: str, name: str) -> str:
    return name if kind == requirement.kind else f"{kind}/{name}"


def credential_pickers(
    manifest: WorkflowManifest,
    stored: list[tuple[str, str]],
    values: dict[str, Any],
    key: str,
    slots: MutableMapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One choice per credential setting of ``manifest``; return ``{setting: reference}``."""
    data: dict[str, Any] = {}
    for setting, requirement in manifest.credential_fields().items():
        data |= _picker(setting, requirement, stored, values, key)
        if slots is not None:
            slots[setting] = st.empty()
    return data


def _picker(
    setting: str,
    requirement: CredentialRequirement,
    stored: list[tuple[str, str]],
    values: dict[str, Any],
    key: str,
) -> dict[str, Any]:
    """The choice (or the line standing for it) of one credential setting."""
    title = kind_words(requirement.kind).title
    matching = [(kind, name) for kind, name in stored if kind in requirement.kinds]
    options = [_reference(requirement, kind, name) for kind, name in matching]
    labels = {
        _reference(requirement, kind, name): f"{kind_words(kind).title} · {name}"
        for kind, name in matching
    }
    if requirement.optional:
        options = ["", *options]
        labels[""] = "None"
    if not [o for o in options if o]:
        if not requirement.optional:
            alternatives = " or ".join(kind_words(k).title for k in requirement.kinds)
            st.info(f"{requirement.description} Add your {alternatives} under Credentials.")
        return {}
    if len(options) == 1:
        st.caption(f"{requirement.description} Uses your {labels[options[0]]}.")
        return {setting: options[0]}
    current = values.get(setting)
    chosen = st.selectbox(
        title if not requirement.optional else f"{title} (optional)",
        options,
        index=options.index(current) if current in options else 0,
        format_func=labels.get,
        help=requirement.description,
        key=f"{key}.{setting}",
    )
    return {setting: chosen} if chosen else {}
