"""``agency user add|invite`` and the ``agency portal`` command line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.settings import Settings, get_settings
from cli.commands.portal import PORTAL_APP, streamlit_command
from cli.main import app
from services import authenticate


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_user_add_and_invite(settings: Settings) -> None:
    runner = CliRunner()
    added = runner.invoke(
        app,
        ["user", "add", "Ops@Agency.test", "--role", "agency"],
        input="long enough pw\nlong enough pw\n",
    )
    assert added.exit_code == 0, added.output
    assert "long enough pw" not in added.output
    assert authenticate(settings, "ops@agency.test", "long enough pw").is_agency

    assert runner.invoke(app, ["client", "add", "acme"]).exit_code == 0
    invited = runner.invoke(app, ["user", "invite", "boss@acme.test", "--client", "acme"])
    assert invited.exit_code == 0, invited.output
    (password,) = re.findall(r"temporary password \(shown once\): (\S+)", invited.output)
    assert authenticate(settings, "boss@acme.test", password).client == "acme"

    again = runner.invoke(app, ["user", "invite", "boss@acme.test", "--client", "acme"])
    assert again.exit_code == 2 and again.output.startswith("error: A user with email")


def test_portal_serves_the_router_on_the_configured_address() -> None:
    command = streamlit_command(Settings(portal_host="0.0.0.0", portal_port=9999))
    assert command[1:5] == ["-m", "streamlit", "run", str(PORTAL_APP)]
    assert PORTAL_APP.exists() and PORTAL_APP.name == "app.py"
    pairs = dict(zip(command[5::2], command[6::2], strict=True))
    assert pairs["--server.address"] == "0.0.0.0" and pairs["--server.port"] == "9999"
    assert pairs["--server.headless"] == "true"
    assert streamlit_command(Settings())[6:9] == ["127.0.0.1", "--server.port", "8501"]
