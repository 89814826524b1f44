"""Chains as platform records on a real Prefect server: recorded with their automation, listed,
removed with either end's deactivation or offboarding, rebuilt when the automation is gone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import select
from typer.testing import CliRunner

import services.chains
from agency.db import AuditLog, session_scope, upgrade
from agency.db.models import Chain
from agency.errors import NotFound
from agency.settings import Settings, get_settings
from deployments import ensure_work_pool
from deployments.chaining import chain_exists, chain_name
from services import activate, add_client, deactivate
from services.chains import list_chains, reconcile_chains, remove_chain
from services.lifecycle import offboard_client

pytestmark = pytest.mark.usefixtures("prefect_server", "echo_workflows")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path, work_pool="agency-chain-records")
    upgrade(settings.platform_database_url)
    ensure_work_pool(settings.work_pool)
    return settings


def _chained(settings: Settings, client: str) -> UUID:
    add_client(settings, client, client)
    activate(settings, client, "echo", {}, None)
    activate(settings, client, "echo_strict", {}, None, after="echo")
    [view] = list_chains(settings, client)
    assert (view.upstream, view.downstream) == ("echo", "echo_strict")
    assert view.automation_id is not None
    return UUID(view.automation_id)


def _automations(client: str) -> list[UUID]:
    with get_client(sync_client=True) as api:
        return [
            a.id for a in api.read_automations_by_name(chain_name(client, "echo", "echo_strict"))
        ]


def test_a_chain_is_recorded_with_its_automation(settings: Settings, client_slug: str) -> None:
    automation = _chained(settings, client_slug)
    assert _automations(client_slug) == [automation]
    # chaining again replaces the automation and keeps one record
    activate(settings, client_slug, "echo_strict", {}, None, after="echo")
    [view] = list_chains(settings, client_slug)
    assert _automations(client_slug) == [UUID(str(view.automation_id))] != [automation]


@pytest.mark.parametrize("end", ["echo_strict", "echo"])
def test_deactivating_either_end_removes_the_chain(
    settings: Settings, client_slug: str, end: str
) -> None:
    automation = _chained(settings, client_slug)
    deactivate(settings, client_slug, end)
    assert list_chains(settings, client_slug) == []
    assert not chain_exists(automation)
    assert _automations(client_slug) == []
    with session_scope(settings.platform_database_url) as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.target == "echo->echo_strict")
        )
        assert list(actions) == ["chain.add", "chain.remove"]


def test_a_chain_is_removable_and_only_the_clients_own(
    settings: Settings, client_slug: str
) -> None:
    automation = _chained(settings, client_slug)
    other = f"{client_slug}x"
    add_client(settings, other, other)
    with pytest.raises(NotFound):
        remove_chain(settings, other, "echo", "echo_strict")
    assert chain_exists(automation)
    remove_chain(settings, client_slug, "echo", "echo_strict")
    assert list_chains(settings, client_slug) == [] and not chain_exists(automation)


def test_a_missing_automation_is_rebuilt_and_a_stray_one_deleted(
    settings: Settings, client_slug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    automation = _chained(settings, client_slug)
    with get_client(sync_client=True) as api:
        api.delete_automation(automation)
    done = reconcile_chains(settings)
    assert f"{client_slug}:echo->echo_strict" in done.rebuilt
    [view] = list_chains(settings, client_slug)
    assert view.automation_id != str(automation) and chain_exists(UUID(str(view.automation_id)))
    assert _automations(client_slug) == [UUID(str(view.automation_id))]
    # a second pass changes nothing
    again = reconcile_chains(settings)
    assert f"{client_slug}:echo->echo_strict" not in again.rebuilt + again.dropped
    # an automation without a record whose ends are not both active is deleted
    from deployments.chaining import chain as make_chain

    stray = make_chain(client_slug, "echo_strict", UUID(int=1), "echo_batch", UUID(int=2))
    reconcile_chains(settings)
    assert chain_exists(stray)  # young: its activation may still be committing
    monkeypatch.setattr(services.chains, "STRAY_GRACE", timedelta(0))
    assert reconcile_chains(settings).deleted_automations >= 1
    assert not chain_exists(stray)
    # an automation of two active ends without a record (made before chains were recorded)
    # is adopted, not deleted
    [view] = list_chains(settings, client_slug)
    with session_scope(settings.platform_database_url) as session:
        session.query(Chain).delete()
    adopted = reconcile_chains(settings)
    assert adopted.adopted == [f"{client_slug}:echo->echo_strict"]
    assert [v.automation_id for v in list_chains(settings, client_slug)] == [view.automation_id]


def test_the_cli_lists_removes_and_reconciles(
    settings: Settings, client_slug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.commands import chains as chains_cli
    from cli.main import app

    automation = _chained(settings, client_slug)
    monkeypatch.setattr(chains_cli, "_settings", lambda: settings)
    runner = CliRunner()
    listed = runner.invoke(app, ["chains", "list", "--client", client_slug])
    assert listed.exit_code == 0, listed.output
    assert listed.output.split() == ["echo", "echo_strict", str(automation)]
    with get_client(sync_client=True) as api:
        api.delete_automation(automation)
    rebuilt = runner.invoke(app, ["chains", "reconcile"])
    assert f"rebuilt\t{client_slug}:echo->echo_strict" in rebuilt.output, rebuilt.output
    removed = runner.invoke(
        app, ["chains", "remove", "echo", "echo_strict", "--client", client_slug]
    )
    assert removed.exit_code == 0 and list_chains(settings, client_slug) == []
    missing = runner.invoke(
        app, ["chains", "remove", "echo", "echo_strict", "--client", client_slug]
    )
    assert missing.exit_code == 2 and "No chain echo -> echo_strict" in missing.output


def test_offboarding_removes_the_clients_chains(
    settings: Settings, client_slug: str, tmp_path: Path
) -> None:
    automation = _chained(settings, client_slug)
    offboard_client(settings, client_slug, tmp_path / "export.json")
    assert not chain_exists(automation)
    with session_scope(settings.platform_database_url) as session:
        assert session.scalars(select(Chain)).all() == []


def test_the_every_minute_check_rebuilds_chains_and_is_installed_once(
    settings: Settings, client_slug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.waits_flow import install_waits_check, long_waits

    automation = _chained(settings, client_slug)
    with get_client(sync_client=True) as api:
        api.delete_automation(automation)
    monkeypatch.setenv("AGENCY_HOME", str(settings.home))
    monkeypatch.setenv("AGENCY_DATABASE_URL", settings.platform_database_url)
    get_settings.cache_clear()  # the flow reads the process-wide settings, as on a worker
    try:
        summary = long_waits()
    finally:
        get_settings.cache_clear()
    assert summary["chains_rebuilt"] >= 1
    [view] = list_chains(settings, client_slug)
    assert chain_exists(UUID(str(view.automation_id)))
    first = install_waits_check(settings)
    assert install_waits_check(settings) == first
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment(UUID(first))
    assert deployment.name == "every-minute" and deployment.work_pool_name == settings.work_pool
