"""Rollouts on a real Prefect server and process worker: a canary of a release whose runs fail
halts itself and moves its client back; a healthy canary continues to every client; undo. Each
decision emails the agency once (a real aiosmtpd relay)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from agency.errors import InputInvalid
from agency.settings import get_settings
from services import activate, add_client, list_activations
from services.releases import create_release
from services.rollout import rollout_status, start_rollout, tick, undo
from services.rollout_flow import rollout_tick
from tests.deployments.test_releases import (
    _git,
    _settings,
    _write_probe,
    make_project,
    register_probe,
)
from tests.fixtures.smtp import SmtpServer

BROKEN = """from prefect import flow


@flow(name="release_probe")
def probe(client: str, settings: dict | None = None) -> str:
    raise RuntimeError("this release is broken")
"""


def _finish(deployment_id: str) -> str:
    """Run the deployment once and return the final state's type."""
    with get_client(sync_client=True) as api:
        run = api.create_flow_run_from_deployment(UUID(deployment_id))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = api.read_flow_run(run.id).state
            if state is not None and state.is_final():
                return state.type.value
            time.sleep(0.5)
    raise AssertionError("the run did not finish")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The probe workflow's own git checkout, registered in the catalog."""
    register_probe(monkeypatch)
    return make_project(tmp_path)


def _pins(settings: Any, workflow: str = "release_probe") -> dict[str, tuple[str, str]]:
    return {
        v.client: (v.release or "", v.deployment_id or "")
        for v in list_activations(settings)
        if v.workflow == workflow
    }


def _with_relay(settings: Any, smtp: SmtpServer) -> Any:
    return settings.model_copy(
        update={
            "notify_smtp_host": smtp.host,
            "notify_smtp_port": smtp.port,
            "notify_smtp_security": "none",
            "notify_smtp_username": smtp.username,
            "notify_smtp_password": SecretStr(smtp.password),
            "notify_agency_emails": ["oncall@agency.test"],
        }
    )


def _three_clients(settings: Any, tmp_path: Path, client_slug: str) -> list[str]:
    slugs = [f"{client_slug}{c}" for c in "abc"]
    for slug in slugs:
        add_client(settings, slug, slug)
        activate(settings, slug, "release_probe", {"out": str(tmp_path / f"{slug}.json")}, None)
    return slugs


def test_failing_canary_halts_and_moves_its_client_back(
    tmp_path: Path,
    project: Path,
    prefect_worker: Any,
    client_slug: str,
    smtp_server: SmtpServer,
) -> None:
    settings = _with_relay(_settings(tmp_path, project, prefect_worker.pool), smtp_server)
    v1 = create_release(settings, "release_probe")
    slugs = _three_clients(settings, tmp_path, client_slug)
    (project / "tests/release_probe/probe.py").write_text(BROKEN)
    _git(project, "commit", "-q", "-am", "broken")
    v2 = create_release(settings, "release_probe")

    started = start_rollout(settings, "release_probe", v2.short, canary_percent=33, min_runs=1)
    assert (started.mode, started.status, started.clients) == ("canary", "running", slugs[:1])
    assert started.from_release == v1.short and started.to_release == v2.short
    pins = _pins(settings)
    assert [pins[s][0] for s in slugs] == [v2.short, v1.short, v1.short]
    with pytest.raises(InputInvalid, match="running"):
        start_rollout(settings, "release_probe", v2.short, everyone=True)
    assert tick(settings) == []  # no finished canary run yet: it waits
    assert smtp_server.messages == []  # starting and waiting are no decision

    assert [_finish(pins[s][1]) for s in slugs] == ["FAILED", "COMPLETED", "COMPLETED"]
    [decided] = tick(settings)
    assert decided.status == "halted"
    assert (decided.detail["canary_failed"], decided.detail["baseline_runs"]) == (1, 2)
    [mail] = smtp_server.messages  # exactly one email, to the agency
    assert mail.rcpt_tos == ["oncall@agency.test"]
    assert mail.message["Subject"] == "Rollout of release_probe halted"
    body = mail.message.get_content()
    assert f"release {v2.short}" in body and f"moved back to {v1.short}" in body
    assert "canary_failed: 1" in body and "baseline_runs: 2" in body
    assert tick(settings) == [] and len(smtp_server.messages) == 1  # decided once
    assert rollout_status(settings, "release_probe")[0].detail["notice"] == "sent"
    pins = _pins(settings)
    assert [pins[s][0] for s in slugs] == [v1.short] * 3
    assert _finish(pins[slugs[0]][1]) == "COMPLETED"
    assert json.loads((tmp_path / f"{slugs[0]}.json").read_text())["marker"] == "v1"


def test_healthy_canary_continues_to_every_client_and_undo_moves_them_back(
    tmp_path: Path,
    project: Path,
    prefect_worker: Any,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: SmtpServer,
) -> None:
    settings = _with_relay(_settings(tmp_path, project, prefect_worker.pool), smtp_server)
    v1 = create_release(settings, "release_probe")
    slugs = _three_clients(settings, tmp_path, client_slug)
    _write_probe(project, "v2")
    _git(project, "commit", "-q", "-am", "v2")
    v2 = create_release(settings, "release_probe")

    start_rollout(settings, "release_probe", v2.short, canary_percent=50, min_runs=1)
    pins = _pins(settings)
    assert [pins[s][0] for s in slugs] == [v2.short, v2.short, v1.short]
    assert _finish(pins[slugs[0]][1]) == "COMPLETED"
    # the periodic Prefect flow makes the decision (it reads the settings from the environment)
    monkeypatch.setenv("AGENCY_HOME", str(settings.home))
    monkeypatch.setenv("AGENCY_PROJECT_DIR", str(project))
    monkeypatch.setenv("AGENCY_WORK_POOL", settings.work_pool)
    for key, value in {
        "HOST": smtp_server.host,
        "PORT": str(smtp_server.port),
        "SECURITY": "none",
        "USERNAME": smtp_server.username,
        "PASSWORD": smtp_server.password,
    }.items():
        monkeypatch.setenv(f"AGENCY_NOTIFY_SMTP_{key}", value)
    monkeypatch.setenv("AGENCY_NOTIFY_AGENCY_EMAILS", "oncall@agency.test")
    get_settings.cache_clear()
    try:
        assert rollout_tick() == {"continued": 1, "halted": 0}
    finally:
        get_settings.cache_clear()
    [decided] = rollout_status(settings, "release_probe")
    assert (decided.status, decided.clients) == ("done", slugs)
    [mail] = smtp_server.messages
    assert mail.message["Subject"] == "Rollout of release_probe continued"
    assert f"continued to {slugs[2]}" in mail.message.get_content()
    assert [_pins(settings)[s][0] for s in slugs] == [v2.short] * 3

    undone = undo(settings, "release_probe")
    assert undone.status == "undone"
    assert [_pins(settings)[s][0] for s in slugs] == [v1.short] * 3
    assert [r.status for r in rollout_status(settings, "release_probe")] == ["undone"]
