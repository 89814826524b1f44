"""``agency demo`` without a running stack: what it refuses, in one line and exit 2, and what it
leaves alone. The whole demo (created by ``agency up``, its runs, its reset) is exercised by
``tests/test_readme_quickstart.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.settings import Settings, get_settings
from cli.main import app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENCY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_send_webhook_without_a_demo_is_one_line(home: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "send-webhook"])
    assert result.exit_code == 2
    assert "There is no demo webhook: create the demo with `agency demo`" in result.output


def test_if_fresh_leaves_a_home_with_clients_alone(home: Path) -> None:
    from services import add_client

    assert CliRunner().invoke(app, ["client", "list"]).exit_code == 0  # migrates the DB
    add_client(Settings(home=home), "acme", "Acme")
    result = CliRunner().invoke(app, ["demo", "--if-fresh"])
    assert result.exit_code == 0
    assert "demo not created: this platform home has clients or users already" in result.output
    assert not (home / "demo").exists() and not (home / "egress-clients.json").exists()


def test_a_second_demo_is_refused_before_anything_is_written(home: Path) -> None:
    from services import add_client

    assert CliRunner().invoke(app, ["client", "list"]).exit_code == 0
    add_client(Settings(home=home), "demo", "Demo Bakery")
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 2
    assert "The demo exists already: `agency demo --reset` removes it" in result.output
    assert not (home / "egress-clients.json").exists()


def test_an_unreadable_openai_file_is_one_line(home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--openai-from-file", str(tmp_path / "no.json")])
    assert result.exit_code == 2 and "Cannot read" in result.output
