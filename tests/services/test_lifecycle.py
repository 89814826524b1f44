"""``services/lifecycle.py`` on the real Prefect server, gateway and platform DB: a suspended
client is refused at every door and its schedules pause; offboarding exports the client's data
and then leaves nothing of it in the platform DB, the secret store or Prefect but audit rows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
)
from sqlalchemy import func, select

from agency.db import (
    Activation,
    ApiKey,
    AuditLog,
    Client,
    LlmUsage,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    record_llm_usage,
    session_scope,
)
from agency.errors import NotFound
from agency.settings import Settings
from blocks import (
    CLIENT_AREA,
    WEBHOOK_AREA,
    ClientCredential,
    StoredSecret,
    get_secret_store,
    save_credential,
)
from blocks.names import read_documents_by_type
from services.api_keys import create_api_key
from services.auth import create_user
from services.lifecycle import offboard_client, resume_client, suspend_client
from tests.fixtures.gateway import RunningGateway, make_hook
from tests.gateway.test_gateway import post


def _deployment_paused(name: str) -> bool:
    with get_client(sync_client=True) as api:
        return bool(api.read_deployment_by_name(name).paused)


def _deliveries(settings: Settings) -> int:
    with session_scope(settings.platform_database_url) as session:
        return int(session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


def test_every_door_refuses_a_suspended_client_and_resume_reopens_them(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug)
    key = create_api_key(gateway_settings, client_slug).key
    bearer = {"authorization": f"Bearer {key}"}
    assert post(gateway, hook, msg_id="before").status_code == 202
    assert not _deployment_paused(f"echo/{client_slug}")

    view = suspend_client(gateway_settings, client_slug, actor="ops@agency.test")
    assert view.status == "suspended"
    assert _deployment_paused(f"echo/{client_slug}")
    time.sleep(1.1)  # the gateway caches a webhook's target for one second
    before = _deliveries(gateway_settings)
    refused = post(gateway, hook, msg_id="during")
    assert refused.status_code == 403 and refused.json()["error"] == "client_suspended"
    with gateway.client() as http:
        listed = http.get("/api/v1/runs", headers=bearer)
        started = http.post("/api/v1/workflows/echo/runs", json={}, headers=bearer)
    for answer in (listed, started):
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "client_suspended"
    assert _deliveries(gateway_settings) == before  # nothing enqueued

    assert resume_client(gateway_settings, client_slug).status == "active"
    assert not _deployment_paused(f"echo/{client_slug}")
    time.sleep(1.1)
    assert post(gateway, hook, msg_id="after").status_code == 202
    with gateway.client() as http:
        assert http.get("/api/v1/runs", headers=bearer).status_code == 200
    with session_scope(gateway_settings.platform_database_url) as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.target == client_slug).order_by(AuditLog.id)
        ).all()
    assert [a for a in actions if a.startswith("client.")] == [
        "client.create",
        "client.suspend",
        "client.resume",
    ]


def _block_names(slug: str) -> list[str]:
    with get_client(sync_client=True) as api:
        docs = [
            *read_documents_by_type(api, ClientCredential.get_block_type_slug()),
            *read_documents_by_type(api, StoredSecret.get_block_type_slug()),
        ]
    return [d.name for d in docs if slug in (d.name or "")]


@pytest.mark.timeout(600)
def test_offboard_exports_then_leaves_nothing_but_the_audit_log(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str, tmp_path: Path
) -> None:
    settings = gateway_settings
    hook = make_hook(settings, client_slug)
    save_credential(client_slug, "openai", "default", {"api_key": "sk-offboard-me"})
    create_api_key(settings, client_slug)
    create_user(settings, f"boss@{client_slug}.test", "a-long-password-1", "client", client_slug)
    record_llm_usage(
        settings.platform_database_url,
        client=client_slug,
        workflow="echo",
        flow_run_id=None,
        model="gpt-4o-mini",
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
    )
    for n in range(3):
        assert post(gateway, hook, {"n": n}, msg_id=f"m{n}").status_code == 202
    runs_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[f"client:{client_slug}"]))
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as api:
        while len(api.read_flow_runs(flow_run_filter=runs_filter)) < 3:
            assert time.monotonic() < deadline, "the deliveries never became runs"
            time.sleep(0.3)
    assert _block_names(client_slug)

    export = tmp_path / "export" / f"{client_slug}.json"
    done = offboard_client(settings, client_slug, export, actor="ops@agency.test")
    assert (done.runs, done.deployments, done.users) == (3, 1, 1)
    assert done.secrets >= 2  # the credential and the webhook secret

    data = json.loads(export.read_text())
    assert data["client"]["slug"] == client_slug
    assert [a["workflow"] for a in data["activations"]] == ["echo"]
    assert len(data["runs"]) == 3 and data["llm_usage"][0]["total_tokens"] == 15
    assert "client.create" in [row["action"] for row in data["audit_log"]]
    assert "sk-offboard-me" not in export.read_text() and "password_hash" not in data["users"][0]
    assert oct(export.stat().st_mode & 0o777) == "0o600"

    with session_scope(settings.platform_database_url) as session:
        for model, where in (
            (Client, Client.slug == client_slug),
            (User, User.email == f"boss@{client_slug}.test"),
            (ApiKey, ApiKey.name.is_not(None)),
            (Activation, Activation.workflow == "echo"),
            (WebhookEndpoint, WebhookEndpoint.id.is_not(None)),
            (WebhookDelivery, WebhookDelivery.client == client_slug),
            (LlmUsage, LlmUsage.client == client_slug),
        ):
            count = session.scalar(select(func.count()).select_from(model).where(where))
            assert count == 0, model.__name__
        fact = session.scalars(select(AuditLog).where(AuditLog.action == "client.offboard")).one()
        assert fact.target == client_slug and fact.detail["runs"] == 3
        assert session.scalar(select(func.count()).select_from(AuditLog)) > 1  # history kept
    with get_client(sync_client=True) as api:
        assert api.read_flow_runs(flow_run_filter=runs_filter) == []
        named = DeploymentFilter(name=DeploymentFilterName(like_=client_slug))
        assert api.read_deployments(deployment_filter=named) == []
    assert _block_names(client_slug) == []
    for area in (CLIENT_AREA, WEBHOOK_AREA):
        assert get_secret_store(settings, area).list(client_slug) == []
    with pytest.raises(NotFound):
        suspend_client(settings, client_slug)
    with pytest.raises(Exception, match="exists already"):
        offboard_client(settings, client_slug, export)
