"""A second shell finds the running stack's settings: ``agency up`` writes the settings it was
started with into ``<home>/stack-settings.json``; the CLI reads them (environment > that file >
defaults), and ``agency up`` itself never inherits a previous stack's file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agency.settings import STACK_SETTINGS_FILE, Settings
from cli.stack import write_stack_settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import os; from cli import main as m; from agency.settings import get_settings as g; "
    "m.app = lambda: print(os.environ['PREFECT_API_URL'], g().gateway_port, g().portal_port, "
    "g().demo_http_port); m.main()"
)


def _shell(home: Path, **extra: str) -> list[str]:
    """What a fresh shell with only ``AGENCY_HOME`` (and ``extra``) set sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AGENCY_"))}
    env.update(AGENCY_HOME=str(home), **extra)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_second_shell_talks_to_the_stack_it_started(tmp_path: Path) -> None:
    home = tmp_path / "home"
    started = Settings(
        home=home, api_port=14321, gateway_port=18123, demo_http_port=18999, vault_token="s3cret"
    )
    write_stack_settings(started)
    path = home / STACK_SETTINGS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" not in path.read_text() and "vault_token" not in json.loads(path.read_text())
    assert _shell(home) == ["http://127.0.0.1:14321/api", "18123", "8501", "18999"]
    # an explicit environment variable still wins over the file
    assert _shell(home, AGENCY_GATEWAY_PORT="19000")[1] == "19000"


def test_without_the_file_the_defaults_apply(tmp_path: Path) -> None:
    assert _shell(tmp_path / "home") == ["http://127.0.0.1:4200/api", "8080", "8501", "8090"]


def test_agency_up_starts_from_environment_and_defaults_not_a_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    write_stack_settings(Settings(home=home, api_port=14321))
    monkeypatch.setenv("AGENCY_HOME", str(home))
    monkeypatch.delenv("AGENCY_API_PORT", raising=False)
    assert Settings().api_port == 14321
    assert Settings.without_stack_file().api_port == 4200
