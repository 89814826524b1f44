"""`agency webhook …` and `agency api-key …`: the secret and the key are printed once, never by
`show`/`list`; bad input exits 2 with one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.settings import get_settings
from cli.main import app

pytestmark = pytest.mark.usefixtures("prefect_server", "echo_workflows")


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AGENCY_WORK_POOL", "agency-gateway-tests")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code == 1:
        raise AssertionError(f"crashed: {args}") from result.exception
    return result.exit_code, result.output


def test_webhook_and_api_key_commands(client_slug: str) -> None:
    from deployments import ensure_work_pool

    ensure_work_pool("agency-gateway-tests")
    assert run("client", "add", client_slug)[0] == 0
    code, out = run("webhook", "enable", "echo", "--client", client_slug)
    assert code == 2 and "not activated" in out
    assert run("activate", "echo", "--client", client_slug, "--no-schedule")[0] == 0

    code, out = run("webhook", "enable", "echo", "--client", client_slug, "--verifier", "md5")
    assert code == 2 and "Unknown verifier 'md5'" in out
    code, out = run("webhook", "enable", "echo", "--client", client_slug)
    assert code == 0, out
    fields = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    assert fields["url"] == f"http://127.0.0.1:8080/hooks/{client_slug}/echo"
    assert fields["secret"].startswith("whsec_")
    code, out = run("webhook", "show", "echo", "--client", client_slug)
    assert code == 0 and "standard" in out and fields["secret"] not in out
    code, out = run("webhook", "rotate", "echo", "--client", client_slug)
    assert code == 0 and fields["secret"] not in out and "whsec_" in out

    code, out = run("api-key", "create", "--client", client_slug, "--name", "ci")
    assert code == 0
    key = dict(line.split("\t") for line in out.splitlines())["key"]
    code, out = run("api-key", "list", "--client", client_slug)
    assert code == 0 and "ci" in out and key not in out and "active" in out
    key_id = out.split("\t")[0]
    assert run("api-key", "revoke", key_id, "--client", client_slug)[0] == 0
    assert "revoked" in run("api-key", "list", "--client", client_slug)[1]
    code, out = run("api-key", "revoke", "999", "--client", client_slug)
    assert code == 2 and "No API key 999" in out
