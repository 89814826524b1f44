"""The `agency` CLI: bad input exits 2 with one clear line and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.settings import get_settings
from cli.main import app

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AGENCY_WORK_POOL", "agency-cli-tests")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code == 1:
        raise AssertionError(f"crashed: {args}") from result.exception
    return result.exit_code, result.output


def assert_one_line_error(code: int, output: str, needle: str) -> None:
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], output
    assert "Traceback" not in output


def test_bad_input_exits_2_and_writes_nothing(client_slug: str, tmp_path: Path) -> None:
    code, out = run("client", "add", "Not A Slug")
    assert_one_line_error(code, out, "Invalid client slug 'Not A Slug'")
    code, out = run("client", "add", client_slug, "--timezone", "Moon/Base")
    assert_one_line_error(code, out, "Unknown time zone 'Moon/Base'")
    assert run("client", "list") == (0, "")

    assert run("client", "add", client_slug, "--timezone", "Asia/Tokyo")[0] == 0
    code, out = run("client", "add", client_slug)
    assert_one_line_error(code, out, "already exists")

    code, out = run("activate", "daily_digest", "--client", "ghost")
    assert_one_line_error(code, out, "Unknown client 'ghost'")
    code, out = run("activate", "nightly", "--client", client_slug)
    assert_one_line_error(code, out, "Unknown workflow 'nightly'")
    good = ["--set", "source_url=https://x.test/api", "--set", 'recipients=["a@b.test"]']
    code, out = run("activate", "daily_digest", "--client", client_slug, "--cron", "* * *", *good)
    assert_one_line_error(code, out, "Invalid cron expression '* * *'")
    code, out = run("activate", "daily_digest", "--client", client_slug, "--timezone", "X/Y", *good)
    assert_one_line_error(code, out, "Unknown time zone 'X/Y'")
    code, out = run("activate", "daily_digest", "--client", client_slug, "--set", "recipients=[]")
    assert_one_line_error(code, out, "Invalid settings for workflow 'daily_digest'")
    assert run("list", "--client", client_slug) == (0, "")

    code, out = run("run", "daily_digest", "--client", client_slug)
    assert_one_line_error(code, out, "is not activated for client")


def test_credentials_never_from_argv(client_slug: str, tmp_path: Path) -> None:
    assert run("client", "add", client_slug)[0] == 0
    # there is no option that takes a value on the command line
    code, out = run(
        "credentials", "set", "--client", client_slug, "--kind", "openai", "--api-key", "sk-leak"
    )
    assert code == 2 and "No such option" in out
    # no terminal to prompt on: clear error instead of reading stdin blindly
    code, out = run("credentials", "set", "--client", client_slug, "--kind", "openai")
    assert_one_line_error(code, out, "--from-file")

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"api_key": "sk-super-secret-1", "colour": "blue"}))
    code, out = run(
        "credentials", "set", "--client", client_slug, "--kind", "openai", "--from-file", str(bad)
    )
    assert_one_line_error(code, out, "colour: Extra inputs are not permitted")
    assert "sk-super-secret-1" not in out
    code, out = run(
        "credentials",
        "set",
        "--client",
        client_slug,
        "--kind",
        "telepathy",
        "--from-file",
        str(bad),
    )
    assert_one_line_error(code, out, "Unknown credential kind 'telepathy'")
    assert run("credentials", "list", "--client", client_slug) == (0, "")

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"api_key": "sk-super-secret-2"}))
    code, out = run(
        "credentials", "set", "--client", client_slug, "--kind", "openai", "--from-file", str(good)
    )
    assert code == 0 and "sk-super-secret-2" not in out
    assert run("credentials", "list", "--client", client_slug) == (0, "openai\tdefault\tprefect\n")
    assert run("credentials", "delete", "--client", client_slug, "--kind", "openai")[0] == 0
    code, out = run("credentials", "delete", "--client", client_slug, "--kind", "openai")
    assert_one_line_error(code, out, "has no 'openai' credential named 'default'")


def test_vault_unreachable_is_a_clear_error(
    client_slug: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures._net import free_port

    assert run("client", "add", client_slug)[0] == 0
    address = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AGENCY_VAULT_ADDR", address)
    monkeypatch.setenv("AGENCY_VAULT_TOKEN", "hvs.top-secret-token")
    get_settings.cache_clear()
    creds = tmp_path / "c.json"
    creds.write_text(json.dumps({"api_key": "sk-x-1234"}))
    code, out = run(
        "credentials", "set", "--client", client_slug, "--kind", "openai", "--from-file", str(creds)
    )
    assert_one_line_error(code, out, f"Vault at {address}")
    assert f"secret/clients/{client_slug}/openai/default" in out
    assert "top-secret-token" not in out
