"""Safe evaluation of templates and expressions over a run's data: never Python ``eval``.

- templates: jinja2's ``SandboxedEnvironment`` (no attribute access to internals, no imports);
  an undefined name is an error.
- conditions: a jinja2 *expression* in the same sandbox (``a.b >= 80 and c in ["x", "y"]``).
- queries: JMESPath (``items[?price > `10`].name``).
"""

from __future__ import annotations

import json
from typing import Any

import jmespath
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from jmespath.exceptions import JMESPathError

from agency.errors import PermanentNodeError

__all__ = [
    "check_condition",
    "check_query",
    "check_template",
    "evaluate",
    "holds",
    "query",
    "render",
]

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_ENV.filters["tojson"] = lambda value: json.dumps(value, default=str)


def check_template(source: str) -> str:
    """Parse a template, raising ``ValueError`` (for pydantic) when it is malformed."""
    try:
        _ENV.parse(source)
    except TemplateError as exc:
        raise ValueError(f"invalid template: {exc}") from None
    return source


def check_condition(source: str) -> str:
    """Parse a condition expression, raising ``ValueError`` when it is malformed."""
    try:
        _ENV.compile_expression(source)
    except TemplateError as exc:
        raise ValueError(f"invalid condition {source!r}: {exc}") from None
    return source


def check_query(source: str) -> str:
    """Parse a JMESPath query, raising ``ValueError`` when it is malformed."""
    try:
        jmespath.compile(source)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {source!r}: {exc}") from None
    return source


def render(source: str, context: dict[str, Any], what: str = "template") -> str:
    """Render a template in the sandbox; a failure is a ``PermanentNodeError`` naming ``what``."""
    try:
        return _ENV.from_string(source).render(context)
    except TemplateError as exc:
        raise PermanentNodeError(f"The {what} cannot be rendered: {exc}") from exc


def evaluate(source: str, context: dict[str, Any]) -> Any:
    """Evaluate a condition expression in the sandbox over ``context``."""
    try:
        return _ENV.compile_expression(source, undefined_to_none=False)(**context)
    except TemplateError as exc:
        raise PermanentNodeError(f"Condition {source!r} cannot be evaluated: {exc}") from exc
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise PermanentNodeError(f"Condition {source!r} failed: {exc}") from exc


def holds(source: str, context: dict[str, Any]) -> bool:
    """Whether a condition is true over ``context`` (an undefined name is an error, not false)."""
    value = evaluate(source, context)
    try:
        return bool(value)
    except TemplateError as exc:  # StrictUndefined refuses to be tested
        raise PermanentNodeError(f"Condition {source!r} cannot be evaluated: {exc}") from exc


def query(source: str, data: Any) -> Any:
    """Apply a JMESPath query to ``data``."""
    try:
        return jmespath.search(source, data)
    except JMESPathError as exc:
        raise PermanentNodeError(f"JMESPath expression {source!r} failed: {exc}") from exc
