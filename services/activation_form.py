"""Checking an activation form before anything is saved: every problem, by the field it is in,
in words a client understands.

:func:`form_errors` runs the same checks as activation (the workflow's settings model, the
credentials its settings name, the cron expression, the time zone) but collects every problem
instead of stopping at the first, keyed by the field: a settings field's name, ``cron`` or
``timezone``. A face shows each next to its field and saves nothing while any is left.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agency.errors import InputInvalid
from deployments.schedules import check_cron, check_timezone
from flows._common import IDENTIFIER
from flows.catalog import get_workflow

#: problems by field: a settings field name, ``cron`` or ``timezone``
FieldErrors = dict[str, list[str]]
CRON = "cron"
TIMEZONE = "timezone"


def _number(value: Any) -> str:
    """``10`` for ``10.0``: bounds read as people write them."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def in_words(error: ErrorDetails) -> str:
    """One pydantic error as a sentence about the value the person typed."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "Fill this in: it is required."
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()))
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        return f"Enter a number {words} {_number(bound)}."
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "Enter a whole number, like 3."
    if kind in ("float_parsing", "float_type"):
        return "Enter a number, like 2.5."
    if kind == "too_short":
        return f"Enter at least {ctx.get('min_length', 1)}, one per line."
    if kind == "too_long":
        return f"Enter at most {ctx.get('max_length')}, one per line."
    if kind == "string_too_short":
        return f"Enter at least {ctx.get('min_length', 1)} character(s)."
    if kind == "string_too_long":
        return f"Enter at most {ctx.get('max_length')} characters."
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == IDENTIFIER:
            return "Use lowercase letters, digits and _ only, starting with a letter or _."
        return "This value does not have the expected form."
    if kind == "literal_error":
        return f"Choose one of: {ctx.get('expected')}."
    if kind == "extra_forbidden":
        return "This workflow has no such setting."
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def settings_errors(model: type[BaseModel], data: dict[str, Any]) -> FieldErrors:
    """The problems of ``data`` against ``model`` by field; a list item's problem names its
    line (``Line 2: 'x' is not an email address...``)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors: FieldErrors = {}
        for error in exc.errors(include_input=False, include_url=False):
            loc = error["loc"]
            name = str(loc[0]) if loc else ""
            lines = [f"Line {p + 1}" for p in loc[1:] if isinstance(p, int)]
            words = in_words(error)
            errors.setdefault(name, []).append(": ".join([*lines[:1], words]))
        return errors
    return {}


def form_errors(
    workflow: str, data: dict[str, Any], cron: str | None, timezone: str
) -> FieldErrors:
    """Every problem of an activation form (empty when it may be saved)."""
    manifest = get_workflow(workflow)
    errors = settings_errors(manifest.settings_model, data)
    if not errors:
        model = manifest.settings_model.model_validate(data)
        for setting, requirement in manifest.credential_fields().items():
            value = getattr(model, setting, None)
            if value:
                try:
                    requirement.resolve(str(value))
                except InputInvalid as exc:
                    errors.setdefault(setting, []).append(str(exc))
    if cron:
        try:
            check_cron(cron)
        except InputInvalid as exc:
            errors[CRON] = [str(exc)]
    if not timezone.strip():
        errors[TIMEZONE] = ["Fill in a time zone, such as Europe/Paris or UTC."]
    else:
        try:
            check_timezone(timezone)
        except InputInvalid as exc:
            errors[TIMEZONE] = [str(exc)]
    return errors


__all__ = ["CRON", "TIMEZONE", "FieldErrors", "form_errors", "in_words", "settings_errors"]
