"""The spine scenario, shared by the end-to-end and the secret-leak tests.

Through the ``agency`` CLI on real services: a client is created, its credentials go into a real
Vault-API server (OpenBao), written with the client's own AppRole; ``daily_digest`` is activated
as a Prefect deployment and ``agency run`` starts it on a real Prefect server, where a real
process worker executes it: the client's JSON API (local HTTP server) is fetched with a bearer
token, the OpenAI-compatible endpoint (a local server standing in for a real LLM, which cannot
run here) writes the summary, and the email reaches a real SMTP server (aiosmtpd).

Use it as::

    with platform_on_vault(vault_server, prefect_worker.pool, vault_server.root_token):
        done = run_daily_digest(tmp_path, vault_server, prefect_worker, ..., client_slug)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from agency.settings import get_settings
from blocks import ClientCredential, VaultConnection
from cli.main import app
from tests.fixtures.http_server import HttpServer, Reply
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.vault import VaultServer
from tests.fixtures.worker import Worker

__all__ = ["DigestRun", "cli", "platform_on_vault", "run_daily_digest"]


@dataclass(frozen=True)
class DigestRun:
    """What the scenario did: the flow run, the CLI's output and the values it stored."""

    client: str
    run_id: UUID
    output: str  # everything the CLI printed
    summary: str  # the LLM's text, which must reach the email and an artifact
    api_token: str  # the client's http_auth bearer token, stored in Vault


def cli(*args: str) -> str:
    """Invoke ``agency`` in-process; it must exit 0. Returns its output."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _write(path: Path, data: dict[str, object]) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@contextmanager
def platform_on_vault(vault: VaultServer, pool: str, token: str) -> Iterator[None]:
    """Point the platform's settings at ``vault`` (platform ``token``) and work pool ``pool``.

    The platform's token onboards the client (policy + AppRole); the client's credentials are
    then written and read with the client's own AppRole, confined to ``clients/<client>/*``.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENCY_VAULT_ADDR", vault.addr)
        mp.setenv("AGENCY_VAULT_TOKEN", token)
        mp.setenv("AGENCY_WORK_POOL", pool)
        get_settings.cache_clear()
        try:
            yield
        finally:
            get_settings.cache_clear()


def run_daily_digest(
    tmp_path: Path,
    vault_server: VaultServer,
    worker: Worker,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client: str,
) -> DigestRun:
    """Onboard ``client``, store its three credentials, activate and run ``daily_digest``.

    Asserts that each step succeeded, the email arrived with the LLM's text and the LLM saw the
    data fetched with the bearer token. Run it inside :func:`platform_on_vault`.
    """
    api_token = f"tok-{secrets.token_hex(12)}"
    http_server.handle(
        "/digest-data",
        lambda req: (
            Reply(json={"items": ["zephyr-widget sales up 42%", "two new leads"]})
            if req.headers.get("authorization") == f"Bearer {api_token}"
            else Reply(status=401)
        ),
    )
    summary = f"Zephyr widget sales rose 42% ({secrets.token_hex(3)})."
    llm_server.reply_next(summary)
    outputs = [
        cli(
            "client",
            "add",
            client,
            "--name",
            "Acme Corp",
            "--timezone",
            "Europe/Paris",
            "--email",
            "boss@acme.test",
        )
    ]
    creds = {
        "http_auth": ("api", {"scheme": "bearer", "token": api_token}),
        "openai": (
            "default",
            {
                "api_key": llm_server.api_key,
                "base_url": llm_server.base_url,
                "default_model": "gpt-4o-mini",
            },
        ),
        "smtp": (
            "default",
            {
                "host": smtp_server.host,
                "port": smtp_server.port,
                "username": smtp_server.username,
                "password": smtp_server.password,
                "from_address": "digest@agency.test",
                "security": "none",
            },
        ),
    }
    for kind, (name, data) in creds.items():
        out = cli(
            "credentials",
            "set",
            "--client",
            client,
            "--kind",
            kind,
            "--name",
            name,
            "--from-file",
            _write(tmp_path / f"{kind}.json", data),
        )
        assert "(vault)" in out
        outputs.append(out)
    listed = cli("credentials", "list", "--client", client)
    assert api_token not in listed and smtp_server.password not in listed
    outputs.append(listed)
    # the values live in Vault at the contract path
    stored = vault_server.client().secrets.kv.v2.read_secret_version(
        path=f"clients/{client}/http_auth/api", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"]["token"] == api_token
    reference = ClientCredential.load_block(f"{client}-http-auth-api")
    assert reference.vault_connection == f"vault-{client}"
    assert VaultConnection.load(f"vault-{client}").auth_method == "approle"

    settings = {
        "source_url": http_server.url("/digest-data"),
        "source_credential": "api",
        "recipients": ["team@acme.test", "boss@acme.test"],
        "subject": "Acme digest",
    }
    out = cli(
        "activate",
        "daily_digest",
        "--client",
        client,
        "--settings-file",
        _write(tmp_path / "settings.json", settings),
    )
    assert "cron '0 7 * * *' (Europe/Paris)" in out
    outputs.append(out)

    result = CliRunner().invoke(
        app, ["run", "daily_digest", "--client", client, "--timeout", "240"], catch_exceptions=False
    )
    assert result.exit_code == 0, f"{result.output}\n--- worker log ---\n{worker.log()[-4000:]}"
    assert "finished: COMPLETED" in result.output
    outputs.append(result.output)

    # the email reached the SMTP server with the LLM's text
    [mail] = smtp_server.messages
    assert sorted(mail.rcpt_tos) == ["boss@acme.test", "team@acme.test"]
    assert mail.message["Subject"] == "Acme digest"
    text = mail.message.get_body(preferencelist=("plain",)).get_content()
    html = mail.message.get_body(preferencelist=("html",)).get_content()
    assert summary in text and "<p>Zephyr widget sales rose 42%" in html
    # the LLM saw the client's data, fetched with the bearer token
    assert (
        "zephyr-widget sales up 42%"
        in llm_server.chat_requests()[-1].body["messages"][-1]["content"]
    )
    first = result.output.splitlines()[0]  # "started flow run <name> (<id>)"
    run_id = UUID(first.rsplit("(", 1)[1].rstrip(")"))
    return DigestRun(client, run_id, "".join(outputs), summary, api_token)
