"""Generate ``docs/nodes.md`` from the built-in node catalog: ``python -m nodes.docs``.

``render()`` returns the Markdown; ``python -m nodes.docs --check`` exits 1 when the file on
disk differs (a test does the same, so the doc cannot go stale).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nodes._base import NodeSpec
from nodes.catalog import BUILTIN

__all__ = ["DOC_PATH", "render", "main"]

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "nodes.md"


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return defs.get(prop["$ref"].rsplit("/", 1)[-1], {}).get("title", "object")
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(_type(p, defs) for p in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type(prop['additionalProperties'], defs)}"
    return str(kind or "any")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fields(schema: dict[str, Any], with_default: bool) -> list[str]:
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    head = (
        "| field | type | required | default | description |"
        if with_default
        else ("| field | type | description |")
    )
    rows = [head, "|---|---|---|---|---|" if with_default else "|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        kind = _type(prop, defs)
        text = _cell(prop.get("description", prop.get("title", "")))
        if with_default:
            default = "" if name in required else f"`{json.dumps(prop.get('default'))}`"
            flag = "yes" if name in required else ""
            rows.append(f"| `{name}` | {kind} | {flag} | {default} | {text} |")
        else:
            rows.append(f"| `{name}` | {kind} | {text} |")
    return rows


def _section(spec: NodeSpec) -> list[str]:
    task = spec.task
    credential = f"`{spec.credential_kind}`" if spec.credential_kind else "none"
    lines = [
        f"## `{spec.kind}` — {spec.title}",
        "",
        spec.description,
        "",
        f"- Credential kind: {credential}",
        f"- Policy: {task.retries} retries on transient errors (backoff "
        f"{', '.join(f'{d:g}' for d in task.retry_delay_seconds or [])} s, jitter), "
        f"timeout {task.node_timeout_seconds:g} s",
        "",
        "Input:",
        "",
        *_fields(spec.input_schema, with_default=True),
        "",
        "Output:",
        "",
        *_fields(spec.output_schema, with_default=False),
        "",
    ]
    if spec.example is not None:
        lines += [
            "Example params:",
            "",
            "```json",
            json.dumps(spec.example, indent=2, ensure_ascii=False),
            "```",
            "",
        ]
    return lines


def render() -> str:
    """The whole ``docs/nodes.md``."""
    specs = [BUILTIN[kind] for kind in sorted(BUILTIN)]
    lines = [
        "# Node catalog",
        "",
        "Generated from `nodes/catalog.py` by `python -m nodes.docs`; do not edit by hand "
        "(`tests/nodes/test_docs.py` fails when this file is stale).",
        "",
        "Every node is a Prefect task taking one input model (`client` plus the fields below; "
        "unknown fields are rejected) and returning one output model. Credentials are passed by "
        "*name* and resolved inside the task. Nodes shipped by other packages register through "
        "the `agency.nodes` entry-point group and are listed by `agency nodes`.",
        "",
        "| kind | title | credential |",
        "|---|---|---|",
        *(
            f"| [`{s.kind}`](#{s.kind}--{s.title.lower().replace(' ', '-')}) "
            f"| {s.title} | {s.credential_kind or ''} |"
            for s in specs
        ),
        "",
    ]
    for spec in specs:
        lines += _section(spec)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the doc, or with ``--check`` report whether it is stale (exit 1)."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run python -m nodes.docs", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
