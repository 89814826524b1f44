"""``agency up`` and the install job deploy the rollout tick with the other platform flows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from agency.settings import Settings


@pytest.mark.usefixtures("prefect_server")
def test_the_platform_flows_include_the_rollout_tick_every_15_minutes(tmp_path: Path) -> None:
    from cli.stack import install_platform_flows
    from deployments import ensure_work_pool
    from services.rollout_flow import DEPLOYMENT, ENTRYPOINT, FLOW_NAME, install_rollout_tick

    settings = Settings(home=tmp_path / "home", work_pool="agency-rollout-install")
    ensure_work_pool(settings.work_pool)
    install_platform_flows(settings)
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT}")
    assert install_rollout_tick(settings) == str(deployment.id)  # updated, not duplicated
    assert deployment.work_pool_name == "agency-rollout-install"
    assert deployment.entrypoint == ENTRYPOINT and "platform" in deployment.tags
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == 1
    (schedule,) = deployment.schedules
    assert schedule.schedule.interval == timedelta(minutes=15)  # type: ignore[union-attr]
    assert schedule.active and not deployment.paused
    with get_client(sync_client=True) as api:
        again = api.read_deployment(UUID(install_rollout_tick(settings)))
    assert again.id == deployment.id and len(again.schedules) == 1
