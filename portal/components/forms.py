"""Forms generated from pydantic models: labels from field titles, help from descriptions,
``SecretStr`` fields masked, ``Literal`` fields as choices, lists one item per line; each field
can show its problems right under itself (:func:`show_field_errors`)."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import streamlit as st
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo


def _base(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``| None``, and whether ``None`` was allowed."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _field(name: str, field: FieldInfo, default: Any, key: str) -> Any:
    annotation, nullable = _base(field.annotation)
    label = field.title or name.replace("_", " ").capitalize()
    if field.is_required():
        label += " *"
    help_text = field.description
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        index = choices.index(default) if default in choices else 0
        return st.selectbox(label, choices, index=index, help=help_text, key=key)
    if annotation is bool:
        return st.checkbox(label, value=bool(default), help=help_text, key=key)
    if annotation is int:
        value = st.text_input(
            label, value="" if default is None else str(default), key=key, help=help_text
        )
        return int(value) if value.strip().lstrip("-").isdigit() else (value or None)
    if typing.get_origin(annotation) is list:
        text = st.text_area(label, value="\n".join(default or []), help=help_text, key=key)
        return [line.strip() for line in text.splitlines() if line.strip()]
    if annotation is SecretStr:
        value = st.text_input(label, value="", type="password", help=help_text, key=key)
    else:
        value = st.text_input(
            label, value="" if default is None else str(default), key=key, help=help_text
        )
    if value == "" and (nullable or not field.is_required()):
        return None
    return value


def model_form(
    model: type[BaseModel],
    key: str,
    values: dict[str, Any] | None = None,
    only: list[str] | None = None,
    slots: MutableMapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Render one input per field of ``model`` (or of ``only`` those); return the entered data
    (``None`` for empty optional fields, which are then left out so the model's defaults
    apply). With ``slots``, an empty place under each field is kept there by field name, for
    :func:`show_field_errors` to fill once the whole form has been read."""
    values = values or {}
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if only is not None and name not in only:
            continue
        default = values.get(
            name, None if field.is_required() else field.get_default(call_default_factory=True)
        )
        if isinstance(default, SecretStr):
            default = None
        value = _field(name, field, default, f"{key}.{name}")
        if slots is not None:
            slots[name] = st.empty()
        if value is not None:
            data[name] = value
    return data


def show_field_errors(
    slots: Mapping[str, Any], errors: Mapping[str, list[str]]
) -> dict[str, list[str]]:
    """Show each field's problems in its slot, under the field (and clear the slots of fields
    without one); return the problems that have no slot on this form, for the caller to show."""
    for name, slot in slots.items():
        problems = errors.get(name)
        if problems:
            slot.error("\n\n".join(problems), icon="⚠️")
        else:
            slot.empty()
    return {name: problems for name, problems in errors.items() if name not in slots}
