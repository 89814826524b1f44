"""The spine end to end, on real services, through the `agency` CLI (``tests/scenario.py``).

A client is onboarded with its credentials in a real Vault-API server (OpenBao), `daily_digest`
is activated and `agency run` runs it on a real Prefect server and process worker against local
HTTP, LLM and SMTP servers. Then every view the Prefect API gives of that run is searched for the
stored secret values (``tests/test_secret_leak.py`` searches everything else).
"""

from __future__ import annotations

from pathlib import Path

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

from agency.db import LlmUsage, session_scope
from agency.settings import get_settings
from tests.fixtures.http_server import HttpServer
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.vault import VaultServer
from tests.fixtures.worker import Worker
from tests.scenario import platform_on_vault, run_daily_digest


def test_daily_digest_end_to_end(
    tmp_path: Path,
    vault_server: VaultServer,
    prefect_worker: Worker,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client_slug: str,
) -> None:
    vault_token = vault_server.root_token
    with platform_on_vault(vault_server, prefect_worker.pool, vault_token):
        done = run_daily_digest(
            tmp_path,
            vault_server,
            prefect_worker,
            http_server,
            llm_server,
            smtp_server,
            client_slug,
        )
    client, run_id = done.client, done.run_id

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
    assert any(done.summary in (a.data or "") for a in artifacts)
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
    for secret in (done.api_token, llm_server.api_key, smtp_server.password, vault_token):
        assert secret not in everything

    with session_scope(get_settings().platform_database_url) as session:
        usage = session.scalars(select(LlmUsage).where(LlmUsage.client == client)).all()
        assert [(u.workflow, u.flow_run_id) for u in usage] == [("daily_digest", str(run_id))]
        assert usage[0].total_tokens > 0
