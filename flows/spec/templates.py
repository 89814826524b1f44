"""Templates and conditions over a run's data: sandboxed jinja2, never Python ``eval``.

A param that is exactly one ``{{ expression }}`` keeps the expression's type (a list stays a
list); any other string renders to text. ``when:`` conditions are jinja2 expressions.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

ROOTS = ("inputs", "nodes", "item", "client")
_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)

ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render templates inside ``value`` (recursing into dicts and lists)."""
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if not is_template(value):
        return value
    single = _SINGLE.match(value)
    if single and "{{" not in single.group(1):
        return evaluate(single.group(1), context)
    return _template(value).render(context)


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """Evaluate one jinja2 expression (e.g. a ``when:`` condition) against ``context``."""
    return _expression(expression)(**context)


# a spec's templates recur on every run and every map item: compile each once
@lru_cache(maxsize=4096)
def _template(source: str) -> Any:
    return ENV.from_string(source)


@lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    return ENV.compile_expression(source, undefined_to_none=False)


def _path(node: nodes.Node) -> tuple[str, ...] | None:
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            parts.append(str(node.arg.value))
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def references(value: Any, *, expression: bool = False) -> list[tuple[str, ...]]:
    """Attribute paths a template (or expression) reads, e.g. ``("nodes", "enrich", "output")``.

    Raises ``TemplateSyntaxError`` for malformed templates.
    """
    if isinstance(value, dict):
        return [p for v in value.values() for p in references(v)]
    if isinstance(value, list):
        return [p for v in value for p in references(v)]
    if not expression and not is_template(value):
        return []
    source = "{{ " + value + " }}" if expression else value
    tree = ENV.parse(source)
    free = meta.find_undeclared_variables(tree)  # loop variables and {% set %} names excluded
    paths: list[tuple[str, ...]] = []
    for found in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        path = _path(found)
        if path and path[0] in free:
            paths.append(path)
    # keep the longest path per chain: drop paths that are prefixes of another
    unique = set(paths)
    return sorted(p for p in unique if not any(q != p and q[: len(p)] == p for q in unique))


__all__ = ["ENV", "ROOTS", "TemplateSyntaxError", "evaluate", "is_template", "references", "render"]
