"""Activation against a real Prefect server: deployment `<workflow>/<client>`, tags, schedules,
pause / resume / deactivate, version history and the audit log in the platform DB."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from sqlalchemy import select

from agency.db import Activation, ActivationVersion, AuditLog, session_scope, upgrade
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from deployments import ensure_work_pool, next_runs
from services import activate, add_client, deactivate, list_activations, pause, resume

pytestmark = pytest.mark.usefixtures("prefect_server")

SETTINGS = {"source_url": "https://api.example.com/today", "recipients": ["ops@example.com"]}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path, work_pool="agency-activation-tests")
    upgrade(s.platform_database_url)
    ensure_work_pool(s.work_pool)
    return s


def _deployment(name: str):  # type: ignore[no-untyped-def]
    with get_client(sync_client=True) as api:
        return api.read_deployment_by_name(name)


def test_activate_creates_tagged_scheduled_deployment(settings: Settings, client_slug: str) -> None:
    add_client(settings, client_slug, "Acme", "Europe/Paris", ["boss@acme.test"])
    view = activate(settings, client_slug, "daily_digest", SETTINGS, "0 7 * * *")

    deployment = _deployment(f"daily_digest/{client_slug}")
    assert str(deployment.id) == view.deployment_id
    assert set(deployment.tags) == {f"client:{client_slug}", "workflow:daily_digest"}
    assert deployment.work_pool_name == settings.work_pool
    assert deployment.parameters["client"] == client_slug
    assert deployment.parameters["settings"]["source_url"] == SETTINGS["source_url"]
    assert deployment.version == "1.0.0"
    [schedule] = deployment.schedules
    assert schedule.schedule.cron == "0 7 * * *"
    assert schedule.schedule.timezone == "Europe/Paris"  # the client's own zone by default
    assert deployment.paused is False
    # the deployment runs its pinned release (made on this first activation), not the tree
    entered = deployment.pull_steps[0]["deployments.releases.pull.enter_release"]["directory"]
    release = settings.releases_dir / Path(entered).name
    assert view.release is not None and release.name.startswith(view.release)
    assert deployment.pull_steps == [
        {"deployments.releases.pull.enter_release": {"directory": str(release)}},
        {
            "deployments.releases.pull.verify_release": {
                "directory": str(release),
                "digest": release.name,
            }
        },
    ]
    assert deployment.job_variables == {"env": {"PYTHONPATH": str(release)}}
    assert (release / "flows" / "daily_digest.py").is_file()

    # update: same deployment, new version in the history
    again = activate(
        settings,
        client_slug,
        "daily_digest",
        {**SETTINGS, "subject": "Hi"},
        "30 6 * * 1-5",
        "America/New_York",
    )
    assert again.deployment_id == view.deployment_id and again.version == 2
    deployment = _deployment(f"daily_digest/{client_slug}")
    assert deployment.parameters["settings"]["subject"] == "Hi"
    assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [
        ("30 6 * * 1-5", "America/New_York")
    ]
    with session_scope(settings.platform_database_url) as session:
        act = session.scalar(
            select(Activation).where(Activation.deployment_id == view.deployment_id)
        )
        assert act is not None
        versions = session.scalars(
            select(ActivationVersion).where(ActivationVersion.activation_id == act.id)
        ).all()
        assert [(v.version, v.cron) for v in versions] == [(1, "0 7 * * *"), (2, "30 6 * * 1-5")]
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.client_id == act.client_id)
        ).all()
        assert actions == ["client.create", "activation.activate", "activation.activate"]


def test_pause_resume_deactivate(settings: Settings, client_slug: str) -> None:
    add_client(settings, client_slug, "Beta")
    activate(settings, client_slug, "daily_digest", SETTINGS, "0 7 * * *")
    name = f"daily_digest/{client_slug}"

    assert pause(settings, client_slug, "daily_digest").status == "paused"
    assert _deployment(name).paused is True
    assert resume(settings, client_slug, "daily_digest").status == "active"
    assert _deployment(name).paused is False

    assert deactivate(settings, client_slug, "daily_digest").status == "inactive"
    with pytest.raises(ObjectNotFound):
        _deployment(name)
    [view] = list_activations(settings, client_slug)
    assert view.status == "inactive" and view.deployment_id is None
    with pytest.raises(NotFound):
        pause(settings, client_slug, "daily_digest")


@pytest.mark.parametrize(
    ("workflow", "settings_data", "cron", "tz", "message"),
    [
        ("nope", SETTINGS, None, None, "Unknown workflow 'nope'"),
        ("daily_digest", SETTINGS, "every morning", None, "Invalid cron expression"),
        ("daily_digest", SETTINGS, "0 7 * * *", "Mars/Olympus", "Unknown time zone"),
        ("daily_digest", {"recipients": []}, None, None, "Source URL: Field required"),
    ],
)
def test_bad_input_writes_nothing(
    settings: Settings,
    client_slug: str,
    workflow: str,
    settings_data: dict[str, object],
    cron: str | None,
    tz: str | None,
    message: str,
) -> None:
    add_client(settings, client_slug, "Gamma")
    with pytest.raises((InputInvalid, NotFound), match=message):
        activate(settings, client_slug, workflow, settings_data, cron, tz)
    assert list_activations(settings, client_slug) == []
    with pytest.raises(ObjectNotFound):
        _deployment(f"{workflow}/{client_slug}")


def test_unknown_client(settings: Settings) -> None:
    with pytest.raises(NotFound, match="Unknown client 'ghost'"):
        activate(settings, "ghost", "daily_digest", SETTINGS, None)


def test_next_runs_follow_the_client_time_zone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    start = datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("UTC"))
    runs = next_runs("0 7 * * *", "Europe/Paris", 3, start=start)
    assert [r.isoformat() for r in runs] == [
        "2026-03-29T07:00:00+02:00",  # the day Paris moves to summer time
        "2026-03-30T07:00:00+02:00",
        "2026-03-31T07:00:00+02:00",
    ]


def test_a_registered_spec_activates_like_a_prebuilt_workflow(
    settings: Settings, client_slug: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agency.settings import get_settings
    from flows.spec_catalog import register_spec

    spec = tmp_path / "ping.yaml"
    spec.write_text(
        "name: ping-site\nversion: 2.1.0\ntriggers: [cron, webhook]\n"
        "inputs: {type: object, properties: {url: {type: string}}}\n"
        "nodes:\n  - {id: ping, node: http_request, params: {url: '{{ inputs.url }}'}}\n"
    )
    monkeypatch.setenv("AGENCY_SPEC_DIR", str(tmp_path / "specs"))
    get_settings.cache_clear()
    try:
        register_spec(spec)
        add_client(settings, client_slug, "Spec Co")
        view = activate(
            settings, client_slug, "ping-site", {"url": "https://x.test"}, "*/10 * * * *"
        )
        deployment = _deployment(f"ping-site/{client_slug}")
        assert str(deployment.id) == view.deployment_id and deployment.version == "2.1.0"
        assert deployment.entrypoint == "flows/spec_catalog.py:spec_ping_site"
        assert deployment.parameters["settings"] == {"url": "https://x.test"}
        assert {"client", "settings", "event"} <= set(
            deployment.parameter_openapi_schema["properties"]
        )
    finally:
        get_settings.cache_clear()


def test_webhook_activations_move_to_the_prefork_pool_and_back(
    tmp_path: Path, client_slug: str
) -> None:
    from services.webhooks import disable_webhook, enable_webhook

    settings = Settings(
        home=tmp_path, work_pool="agency-activation-tests", webhook_work_pool="agency-route-prefork"
    )
    upgrade(settings.platform_database_url)
    ensure_work_pool(settings.work_pool)
    add_client(settings, client_slug, "Acme")
    activate(settings, client_slug, "event_archive", {}, None)
    name = f"event_archive/{client_slug}"
    assert _deployment(name).work_pool_name == "agency-activation-tests"

    enable_webhook(settings, client_slug, "event_archive")
    assert _deployment(name).work_pool_name == "agency-route-prefork"
    with get_client(sync_client=True) as api:
        assert api.read_work_pool("agency-route-prefork").type == "agency-prefork"
    # a later change of the activation keeps it where its webhook runs
    activate(settings, client_slug, "event_archive", {"folder": "orders"}, None)
    assert _deployment(name).work_pool_name == "agency-route-prefork"

    disable_webhook(settings, client_slug, "event_archive")
    assert _deployment(name).work_pool_name == "agency-activation-tests"
