"""Located problems: one per mistake, as ``source:line: location: message — hint``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Loc = tuple[Any, ...]


def format_loc(loc: Loc) -> str:
    """``("nodes", 2, "params")`` → ``nodes[2].params``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "spec"


def line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """Line (1-based) of the YAML node at location ``loc``, best effort (its parent's line when
    the location does not exist, e.g. a missing key); None without a document."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        else:
            break
        if child is None:
            break
        node = child
    return None if node is None else node.start_mark.line + 1


@dataclass(frozen=True)
class Problem:
    """One problem at ``loc`` of a document; ``hint`` says how to fix it."""

    loc: Loc
    message: str
    hint: str | None = None

    def render(self, source: str, root: yaml.Node | None, loc: Loc | None = None) -> str:
        """``source:line: location: message — hint`` (``loc`` overrides where it points)."""
        where = self.loc if loc is None else loc
        line = line_of(root, where) or 1
        text = f"{source}:{line}: {format_loc(where)}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


def render_all(problems: list[Problem], source: str, root: yaml.Node | None) -> list[str]:
    """Every problem rendered, in document order (stable for problems on the same line)."""
    keyed = [(line_of(root, p.loc) or 1, p.render(source, root)) for p in problems]
    return [text for _, text in sorted(keyed, key=lambda pair: pair[0])]


__all__ = ["Loc", "Problem", "format_loc", "line_of", "render_all"]
