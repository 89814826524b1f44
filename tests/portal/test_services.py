"""The portal's service layer against the real Prefect test server and platform DB: a user of
client A sees only A's runs, logs, outputs, credentials, activations and usage, and cannot read,
start, retry, activate, roll back, rotate, approve or download anything of client B, even by
crafting the call (passing B's slug or B's ids). Every action leaves an audit row."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Failed
from sqlalchemy import select

from agency.db import AuditLog, record_llm_usage, session_scope, utcnow
from agency.errors import AccessDenied, AuthFailed, InputInvalid, NotFound
from services import admin, runs, usage, workspace
from services.connection_tests import check_connection
from tests.fixtures.portal import PortalWorld, make_run

DIGEST = {"source_url": "https://api.example.test/today", "recipients": ["team@example.test"]}


def _audit(world: PortalWorld, action: str) -> list[AuditLog]:
    with session_scope(world.settings.platform_database_url) as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_runs_logs_and_outputs_are_scoped_to_the_client(portal_world: PortalWorld) -> None:
    w = portal_world
    run_a = make_run(w.client_a, secret_marker="alpha")
    run_b = make_run(w.client_b, StateType.FAILED, secret_marker="bravo")

    listed = runs.list_runs(w.settings, w.a)
    assert [r.id for r in listed] == [str(run_a)]
    assert listed[0].state == "COMPLETED" and listed[0].workflow == "daily_digest"
    assert any("alpha" in line.message for line in runs.run_logs(w.settings, w.a, run_a))
    (artifact,) = runs.run_artifacts(w.settings, w.a, run_a)
    outputs, lines = runs.run_details(w.settings, w.a, run_a)
    assert outputs == [artifact] and any("alpha" in line.message for line in lines)
    name, content = runs.download_artifact(w.settings, w.a, artifact.id)
    assert name.endswith(".md") and b"alpha" in content
    assert [r.target for r in _audit(w, "run.download")] == [name]

    # B's run: exactly as if it did not exist, whatever the route
    for call in (runs.get_run, runs.run_logs, runs.run_artifacts, runs.run_details, runs.retry_run):
        with pytest.raises(NotFound):
            call(w.settings, w.a, run_b)
    (artifact_b,) = runs.run_artifacts(w.settings, w.b, run_b)
    with pytest.raises(NotFound):
        runs.download_artifact(w.settings, w.a, artifact_b.id)
    with pytest.raises(AccessDenied):
        runs.list_runs(w.settings, w.a, client=w.client_b)
    with pytest.raises(NotFound):
        runs.get_run(w.settings, w.a, "not-a-uuid")
    assert len(_audit(w, "run.download")) == 1


def test_run_now_and_retry_only_on_own_activation(portal_world: PortalWorld) -> None:
    w = portal_world
    workspace.activate_workflow(w.settings, w.a, "daily_digest", DIGEST, None)
    started = runs.run_now(w.settings, w.a, "daily_digest")
    assert started.trigger == "manual" and started.client == w.client_a
    with pytest.raises(AccessDenied):
        runs.run_now(w.settings, w.a, "daily_digest", client=w.client_b)
    with pytest.raises(NotFound):
        runs.run_now(w.settings, w.b, "daily_digest")  # B never activated it
    with pytest.raises(NotFound):
        runs.run_now(w.settings, w.a, f"daily_digest/{w.client_b}")

    with get_client(sync_client=True) as api:
        api.set_flow_run_state(started.id, Failed(), force=True)
    with pytest.raises(NotFound):
        runs.retry_run(w.settings, w.b, started.id)
    retried = runs.retry_run(w.settings, w.a, started.id)
    assert (retried.state, retried.state_name) == ("SCHEDULED", "AwaitingRetry")
    with pytest.raises(InputInvalid, match="Only a failed"):
        runs.retry_run(w.settings, w.a, started.id)
    assert [r.actor for r in _audit(w, "run.start")] == [w.email_a]
    assert [r.actor for r in _audit(w, "run.retry")] == [w.email_a]


def test_workspace_actions_on_another_client_are_denied(portal_world: PortalWorld) -> None:
    w, s, b = portal_world, portal_world.settings, portal_world.client_b
    denied = [
        lambda: workspace.catalog(s, w.a, b),
        lambda: workspace.credentials(s, w.a, b),
        lambda: workspace.save_credential(s, w.a, "openai", "default", {"api_key": "k"}, b),
        lambda: workspace.delete_credential(s, w.a, "openai", "default", b),
        lambda: workspace.activations(s, w.a, b),
        lambda: workspace.activate_workflow(s, w.a, "daily_digest", DIGEST, None, client=b),
        lambda: workspace.change_status(s, w.a, "daily_digest", "pause", b),
        lambda: workspace.history(s, w.a, "daily_digest", b),
        lambda: workspace.roll_back(s, w.a, "daily_digest", 1, b),
        lambda: workspace.enable_webhook(s, w.a, "daily_digest", client=b),
        lambda: workspace.rotate_webhook_secret(s, w.a, "daily_digest", b),
        lambda: workspace.get_webhook(s, w.a, "daily_digest", b),
        lambda: workspace.pending_approvals(s, w.a, b),
        lambda: workspace.answer_approval(s, w.a, "x", approved=True, client=b),
        lambda: usage.usage_by_month(s, w.a, client=b),
        lambda: check_connection(s, w.a, "openai", name="default", client=b),
        lambda: admin.list_clients(s, w.a),
        lambda: admin.create_client(s, w.a, "evil", "Evil"),
        lambda: admin.invite(s, w.a, b, "mallory@evil.test"),
        lambda: admin.runs_failures_first(s, w.a),
        lambda: admin.client_costs(s, w.a),
    ]
    for call in denied:
        with pytest.raises(AccessDenied):
            call()
    assert workspace.credentials(s, w.b) == []
    assert workspace.activations(s, w.b) == []


def test_credentials_and_activation_history_with_rollback(portal_world: PortalWorld) -> None:
    w, s = portal_world, portal_world.settings
    workspace.save_credential(s, w.a, "openai", "default", {"api_key": "sk-alpha-secret"})
    (entry,) = workspace.credentials(s, w.a)
    assert (entry.kind, entry.name) == ("openai", "default") and entry.set_on is not None
    assert "sk-alpha-secret" not in repr(entry)
    assert workspace.credentials(s, w.b) == []
    catalog = {e.slug: e for e in workspace.catalog(s, w.a)}
    assert catalog["daily_digest"].status is None
    assert [r.kind for r in catalog["daily_digest"].missing_credentials] == ["smtp"]

    workspace.activate_workflow(s, w.a, "daily_digest", DIGEST, "0 7 * * *")
    changed = {**DIGEST, "subject": "Changed"}
    workspace.activate_workflow(s, w.a, "daily_digest", changed, "0 9 * * 1-5")
    workspace.change_status(s, w.a, "daily_digest", "pause")
    assert [v.version for v in workspace.history(s, w.a, "daily_digest")] == [2, 1]
    back = workspace.roll_back(s, w.a, "daily_digest", 1)
    assert (back.version, back.cron, back.status) == (3, "0 7 * * *", "active")
    assert back.settings["subject"] == "Your daily digest"
    assert workspace.history(s, w.b, "daily_digest") == []
    with pytest.raises(NotFound):
        workspace.roll_back(s, w.b, "daily_digest", 1)
    actors = {r.actor for r in _audit(w, "activation.activate") + _audit(w, "credential.set")}
    assert actors == {w.email_a}
    assert [r.detail["to_version"] for r in _audit(w, "activation.rollback")] == [1]
    assert _audit(w, "activation.paused")[0].actor == w.email_a
    assert "sk-alpha-secret" not in str([r.detail for r in _audit(w, "credential.set")])


def test_usage_counts_own_tokens_and_runs_only(portal_world: PortalWorld) -> None:
    w, s = portal_world, portal_world.settings
    for client, tokens in ((w.client_a, 150), (w.client_a, 50), (w.client_b, 999)):
        record_llm_usage(
            s.platform_database_url,
            client=client,
            workflow="daily_digest",
            flow_run_id=None,
            model="gpt-4o-mini",
            prompt_tokens=tokens - 10,
            completion_tokens=10,
            total_tokens=tokens,
        )
    make_run(w.client_a)
    make_run(w.client_b)
    make_run(w.client_b)
    (row,) = usage.usage_by_month(s, w.a)
    assert (row.workflow, row.runs, row.tokens) == ("daily_digest", 1, 200)
    assert row.month == f"{utcnow():%Y-%m}"
    costs = {c.client: c.tokens for c in admin.client_costs(s, w.agency)}
    assert costs[w.client_a] == 200 and costs[w.client_b] == 999


def test_agency_sees_every_client_with_failures_first(portal_world: PortalWorld) -> None:
    w, s = portal_world, portal_world.settings
    ok = make_run(w.client_a)
    bad = make_run(w.client_b, StateType.FAILED)
    listed = [r.id for r in admin.runs_failures_first(s, w.agency)]
    assert listed.index(str(bad)) < listed.index(str(ok))
    assert runs.get_run(s, w.agency, bad).client == w.client_b
    clients = {c.slug: c for c in admin.list_clients(s, w.agency)}
    assert clients[w.client_a].users == 1
    admin.create_client(s, w.agency, f"{w.client_a}x", "New Co", "Europe/Berlin")
    assert [r.actor for r in _audit(w, "client.create")][-1] == w.agency_email


def test_expired_principal_cannot_use_any_service(portal_world: PortalWorld) -> None:
    w = portal_world
    expired = replace(w.a, expires_at=utcnow() - timedelta(seconds=1))
    run_a = make_run(w.client_a)
    for call in (
        lambda: runs.list_runs(w.settings, expired),
        lambda: runs.get_run(w.settings, expired, run_a),
        lambda: workspace.catalog(w.settings, expired),
        lambda: usage.usage_by_month(w.settings, expired),
    ):
        with pytest.raises(AuthFailed):
            call()
