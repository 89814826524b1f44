"""Every command shown in the README and docs/ is accepted by the real tools: `agency` lines by
the CLI (click rejects unknown commands and options before honouring `--help`), `make` lines by
the Makefile, `prefect` lines by Prefect's CLI. What they do is exercised by the other tests."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCS:
        for block in _BLOCK.findall(path.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    found.append((f"{path.name}: {line}", shlex.split(line)))
    return found


COMMANDS = _commands()


def test_docs_show_commands() -> None:
    assert len([c for c in COMMANDS if c[1][0] == "agency"]) >= 15


@pytest.mark.parametrize(
    ("where", "argv"),
    [c for c in COMMANDS if c[1][0] == "agency"],
    ids=[c[0] for c in COMMANDS if c[1][0] == "agency"],
)
def test_agency_lines(where: str, argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert result.exit_code == 0, f"{where}\n{result.output}"


def test_make_lines() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    for where, argv in COMMANDS:
        if argv[0] == "make":
            assert set(argv[1:]) <= targets, where


def test_prefect_lines() -> None:
    lines = {tuple(argv) for _, argv in COMMANDS if argv[0] == "prefect"}
    for argv in lines:
        options = [a for a in argv[1:] if a.startswith("--")]
        words = [a for a in argv[1:] if not a.startswith("-")][:3]
        # the subcommand path must exist and accept the options (values dropped)
        path = [w for w in words if w.isalpha() or w in ("work-pool",)][:3]
        result = subprocess.run(
            [sys.executable, "-m", "prefect", *path, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"prefect {' '.join(path)}: {result.stderr[-500:]}"
        for option in options:
            assert option in result.stdout, f"prefect {' '.join(argv)}: no {option}"
