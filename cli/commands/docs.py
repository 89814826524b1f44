"""``agency docs``: regenerate the parts of the docs that are derived from the code.

- README.md's configuration table, from :class:`agency.settings.Settings` (every field: its
  ``AGENCY_*`` variable, default and description);
- docs/specs.md's table of node parameters, from the built-in node catalog.

Each lives between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` markers;
``agency docs --check`` exits 1 when a file differs (``tests/test_docs_generated.py`` too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import AliasChoices

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SPECS = ROOT / "docs" / "specs.md"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(name: str, value: Any) -> str:
    from agency.settings import PROJECT_DIR

    if value is None:
        return "unset"
    if isinstance(value, Path):
        if value == PROJECT_DIR:
            return "the repository"
        home = Path.home()
        return f"`~/{value.relative_to(home)}`" if value.is_relative_to(home) else f"`{value}`"
    if name == "llm_prices":
        return "built-in prices (gpt-4o, gpt-4.1, o4-mini families)"
    if isinstance(value, list) and not value:
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def settings_table() -> str:
    """The Markdown table of every setting: variable, default, meaning."""
    from agency.settings import Settings

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"AGENCY_{name.upper()}"
        default = field.get_default(call_default_factory=True)
        rows.append(
            f"| `{env}` | {_cell(_default(name, default))} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows)


def node_params_table() -> str:
    """The Markdown table of every built-in node's parameters (required ones in bold)."""
    from nodes.catalog import BUILTIN

    rows = ["| node | parameters (**required**) | credential kind |", "|---|---|---|"]
    for kind, spec in sorted(BUILTIN.items()):
        schema = spec.input_schema
        required = set(schema.get("required", []))
        params = [
            f"**`{p}`**" if p in required else f"`{p}`"
            for p in schema.get("properties", {})
            if p != "client"
        ]
        link = f"[`{kind}`](nodes.md#{kind}--{spec.title.lower().replace(' ', '-')})"
        rows.append(f"| {link} | {', '.join(params)} | {spec.credential_kind or ''} |")
    return "\n".join(rows)


def _replace(text: str, name: str, content: str) -> str:
    pattern = re.compile(
        rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.DOTALL
    )
    if not pattern.search(text):
        raise ValueError(f"no <!-- generated:{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(2), text)


def generated() -> dict[Path, str]:
    """Every generated file's expected content."""
    return {
        README: _replace(README.read_text(), "settings", settings_table()),
        SPECS: _replace(SPECS.read_text(), "node-params", node_params_table()),
    }


def docs_cmd(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if a file is stale.")] = False,
) -> None:
    """Regenerate the configuration table (README.md) and the node parameters (docs/specs.md)."""
    stale = [path for path, text in generated().items() if path.read_text() != text]
    if check:
        for path in stale:
            typer.echo(f"stale: {path.relative_to(ROOT)} (run: agency docs)")
        raise typer.Exit(1 if stale else 0)
    for path, text in generated().items():
        if path in stale:
            path.write_text(text)
            typer.echo(f"updated {path.relative_to(ROOT)}")


def register(app: typer.Typer) -> None:
    """Add ``agency docs`` to the CLI."""
    app.command("docs")(docs_cmd)
