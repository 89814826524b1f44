"""The derived parts of the docs equal what the code says (``agency docs`` regenerates them):
README.md's configuration table lists every setting of ``agency/settings.py`` with its variable
and default, docs/specs.md lists every built-in node's parameters; no file of the repository
points outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.settings import Settings
from cli.commands.docs import README, SPECS, generated
from cli.main import app
from nodes.catalog import BUILTIN

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [README, SPECS], ids=["README.md", "docs/specs.md"])
def test_the_generated_tables_are_current(path: Path) -> None:
    assert path.read_text() == generated()[path], f"{path.name} is stale: run `agency docs`"


def test_the_configuration_table_has_every_setting_once() -> None:
    text = README.read_text()
    table = text[text.index("<!-- generated:settings -->") : text.index("<!-- /generated:")]
    for name in Settings.model_fields:
        variable = "AGENCY_EGRESS_ALLOW" if name == "egress_allow" else f"AGENCY_{name.upper()}"
        assert table.count(f"| `{variable}` |") == 1, variable
    assert "| `AGENCY_GATEWAY_PORT` | `8080` |" in table  # a default, as the model says


def test_the_spec_docs_list_every_node_and_its_required_parameters() -> None:
    text = SPECS.read_text()
    for kind, spec in BUILTIN.items():
        assert f"[`{kind}`]" in text, kind
        for param in set(spec.input_schema.get("required", [])) - {"client"}:
            assert f"**`{param}`**" in text, f"{kind}.{param}"


def test_docs_check_fails_on_a_stale_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.commands.docs as docs

    assert CliRunner().invoke(app, ["docs", "--check"]).exit_code == 0
    monkeypatch.setattr(docs, "settings_table", lambda: "| stale |")
    result = CliRunner().invoke(app, ["docs", "--check"])
    assert result.exit_code == 1 and "stale: README.md" in result.output


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    me = Path(__file__).name
    offenders = [
        f
        for f in files
        if f.endswith((".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", "Makefile"))
        and Path(f).name != me
        and (ROOT / f).is_file()
        and ("../shared" in (text := (ROOT / f).read_text(errors="replace")) or "DESIGN.md" in text)
    ]
    assert offenders == []


def test_the_onboarding_template_example_is_what_the_cli_prints() -> None:
    text = (ROOT / "docs" / "onboarding.md").read_text()
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    shown = "\n".join(line.removeprefix("  ") for line in block.splitlines())
    printed = CliRunner().invoke(app, ["credentials", "template", "--kind", "smtp"]).output
    assert shown.strip() == printed.strip()
