"""``cli/stack.py``: what every process of ``agency up`` is given, and the Prefect API's auth.

The session's Prefect server runs with auth on, as the stack's does (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client

from agency.settings import Settings
from cli.stack import AUTH_FILE, stack_environment


def test_the_stack_generates_one_auth_string_for_server_and_clients(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    env = stack_environment(settings)
    auth = env["PREFECT_SERVER_API_AUTH_STRING"]
    assert len(auth) >= 32 and env["PREFECT_API_AUTH_STRING"] == auth
    path = settings.home / AUTH_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == auth
    assert stack_environment(settings)["PREFECT_SERVER_API_AUTH_STRING"] == auth  # kept
    other = stack_environment(Settings(home=tmp_path / "other"))
    assert other["PREFECT_SERVER_API_AUTH_STRING"] != auth


@pytest.mark.usefixtures("prefect_server")
def test_the_prefect_api_refuses_a_caller_without_the_auth_string() -> None:
    api = os.environ["PREFECT_API_URL"]
    path = "/block_types/slug/agency-stored-secret/block_documents/name/x?include_secrets=true"
    assert httpx.get(f"{api}{path}", timeout=10).status_code == 401
    assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).status_code == 401
    wrong = {"Authorization": "Basic d3Jvbmc="}
    assert httpx.post(f"{api}/flow_runs/filter", json={}, headers=wrong).status_code == 401
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200  # probes stay open
    with get_client(sync_client=True) as client:  # the platform's clients send it
        client.read_flow_runs(limit=1)


def test_the_cli_in_another_shell_uses_the_stacks_auth_string(tmp_path: Path) -> None:
    import subprocess
    import sys

    home = tmp_path / "home"
    auth = stack_environment(Settings(home=home))["PREFECT_API_AUTH_STRING"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env["AGENCY_HOME"] = str(home)
    probe = (
        "import os, sys; from cli import main as m; m.app = lambda: print("
        "os.environ['PREFECT_API_URL'], os.environ.get('PREFECT_API_AUTH_STRING')); m.main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["http://127.0.0.1:4200/api", auth]


@pytest.mark.usefixtures("prefect_server")
def test_the_stack_installs_the_daily_credential_health_check(tmp_path: Path) -> None:
    from cli.stack import HEALTH_DEPLOYMENT, install_health_check
    from deployments import ensure_work_pool
    from services.health_flow import ENTRYPOINT, FLOW_NAME

    settings = Settings(home=tmp_path / "home", work_pool="agency-health-install")
    ensure_work_pool(settings.work_pool)
    first = install_health_check(settings)
    assert install_health_check(settings) == first  # updated in place, not duplicated
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment_by_name(f"{FLOW_NAME}/{HEALTH_DEPLOYMENT}")
    assert str(deployment.id) == first
    assert deployment.work_pool_name == "agency-health-install"
    assert deployment.entrypoint == ENTRYPOINT and "platform" in deployment.tags
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 * * *", "UTC")
    assert schedule.active and not deployment.paused
