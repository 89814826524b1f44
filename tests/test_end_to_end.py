"""The spine end to end, on real services, through the `agency` CLI.

A client is created, its credentials go into a real Vault-API server (OpenBao) with a token whose
policy reaches only that client, `daily_digest` is activated as a Prefect deployment, and
`agency run` starts it on a real Prefect server where a real process worker executes it: the
client's JSON API (local HTTP server) is fetched with a bearer token, the OpenAI-compatible
endpoint (a local server standing in for a real LLM, which cannot run here) writes the summary,
and the email reaches a real SMTP server (aiosmtpd). Then every view the Prefect API gives of
that run is searched for the stored secret values.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from sqlalchemy import select
from typer.testing import CliRunner

from agency.cli import app
from agency.db import LlmUsage, session_scope
from agency.settings import get_settings
from blocks import ClientCredential, VaultConnection
from tests.fixtures.http_server import HttpServer, Reply
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.vault import VaultServer
from tests.fixtures.worker import Worker


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _write(path: Path, data: dict[str, object]) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_daily_digest_end_to_end(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    vault_server: VaultServer,
    prefect_worker: Worker,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client_slug: str,
) -> None:
    # the platform's token onboards the client (policy + AppRole); the client's credentials are
    # then written and read with the client's own AppRole, confined to clients/<client>/*
    monkeypatch.setenv("AGENCY_VAULT_ADDR", vault_server.addr)
    monkeypatch.setenv("AGENCY_VAULT_TOKEN", vault_server.root_token)
    monkeypatch.setenv("AGENCY_WORK_POOL", prefect_worker.pool)
    get_settings.cache_clear()
    try:
        _run_scenario(
            tmp_path,
            vault_server,
            prefect_worker,
            http_server,
            llm_server,
            smtp_server,
            client_slug,
            vault_server.root_token,
        )
    finally:
        get_settings.cache_clear()


def _run_scenario(
    tmp_path: Path,
    vault_server: VaultServer,
    worker: Worker,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client: str,
    vault_token: str,
) -> None:
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

    _cli(
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
        out = _cli(
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
    listed = _cli("credentials", "list", "--client", client)
    assert api_token not in listed and smtp_server.password not in listed
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
    out = _cli(
        "activate",
        "daily_digest",
        "--client",
        client,
        "--settings-file",
        _write(tmp_path / "settings.json", settings),
    )
    assert "cron '0 7 * * *' (Europe/Paris)" in out

    result = CliRunner().invoke(
        app, ["run", "daily_digest", "--client", client, "--timeout", "240"], catch_exceptions=False
    )
    assert result.exit_code == 0, f"{result.output}\n--- worker log ---\n{worker.log()[-4000:]}"
    assert "finished: COMPLETED" in result.output

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

    run_id = _run_id_from_output(result.output)
    with get_client(sync_client=True) as api:
        run = api.read_flow_run(run_id)
        task_runs = api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
        logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = api.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        deployment = api.read_deployment(run.deployment_id)  # type: ignore[arg-type]

    assert f"client:{client}" in run.tags and "workflow:daily_digest" in run.tags
    assert {t.name.split("-")[0] for t in task_runs} >= {"http_request", "llm", "send_email"}
    assert any(summary in (a.data or "") for a in artifacts)
    assert logs, "the run logged nothing"

    everything = "\n".join(
        [
            run.model_dump_json(),
            deployment.model_dump_json(),
            *(t.model_dump_json() for t in task_runs),
            *(log.model_dump_json() for log in logs),
            *(a.model_dump_json() for a in artifacts),
        ]
    )
    for secret in (api_token, llm_server.api_key, smtp_server.password, vault_token):
        assert secret not in everything

    with session_scope(get_settings().platform_database_url) as session:
        usage = session.scalars(select(LlmUsage).where(LlmUsage.client == client)).all()
        assert [(u.workflow, u.flow_run_id) for u in usage] == [("daily_digest", str(run_id))]
        assert usage[0].total_tokens > 0


def _run_id_from_output(output: str):  # type: ignore[no-untyped-def]
    from uuid import UUID

    first = output.splitlines()[0]  # "started flow run <name> (<id>)"
    return UUID(first.rsplit("(", 1)[1].rstrip(")"))
