"""Chaining on a real Prefect server and worker: A completes → B runs with A's run id; a client
cannot chain after another client's workflow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter
from prefect.exceptions import ObjectNotFound

from agency.db import upgrade
from agency.errors import NotFound
from agency.settings import Settings
from deployments.chaining import chain_name
from services import activate, add_client


def _runs(name: str) -> list[Any]:
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment_by_name(name)
        return list(
            api.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}))
        )


def test_upstream_completion_starts_downstream_with_its_run_id(
    tmp_path: Path, prefect_worker: Any, client_slug: str, echo_workflows: None
) -> None:
    settings = Settings(home=tmp_path, work_pool=prefect_worker.pool)
    upgrade(settings.platform_database_url)
    add_client(settings, client_slug, client_slug)
    upstream = activate(settings, client_slug, "echo", {}, None)
    activate(settings, client_slug, "echo_strict", {}, None, after="echo")

    with get_client(sync_client=True) as api:
        first = api.create_flow_run_from_deployment(UUID(str(upstream.deployment_id)))
    deadline = time.monotonic() + 90
    downstream: list[Any] = []
    while time.monotonic() < deadline:
        downstream = [r for r in _runs(f"echo_strict/{client_slug}") if r.state.is_completed()]
        if downstream:
            break
        time.sleep(0.5)
    [run] = downstream
    assert run.parameters["event"] == {
        "upstream_flow_run_id": str(first.id),
        "upstream_workflow": "echo",
    }
    assert run.parameters["client"] == client_slug
    [done] = _runs(f"echo/{client_slug}")
    assert done.id == first.id and done.state.is_completed()


def test_cannot_chain_after_another_clients_workflow(
    tmp_path: Path, prefect_server: str, client_slug: str, echo_workflows: None
) -> None:
    from deployments import ensure_work_pool

    settings = Settings(home=tmp_path, work_pool="agency-gateway-tests")
    upgrade(settings.platform_database_url)
    ensure_work_pool(settings.work_pool)
    other = f"{client_slug}-other"
    add_client(settings, client_slug, client_slug)
    add_client(settings, other, other)
    activate(settings, other, "echo", {}, None)  # only the other client runs the upstream

    with pytest.raises(NotFound, match="not activated for client"):
        activate(settings, client_slug, "echo_strict", {}, None, after="echo")
    with get_client(sync_client=True) as api:
        assert api.read_automations_by_name(chain_name(client_slug, "echo", "echo_strict")) == []
        with pytest.raises(ObjectNotFound):
            api.read_deployment_by_name(f"echo_strict/{client_slug}")
