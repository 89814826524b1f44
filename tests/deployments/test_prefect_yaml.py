"""`prefect deploy --all` with the repo's prefect.yaml against a real Prefect server: every
prebuilt flow of the catalog gets an agency-level template deployment on the `agency` pool with
its entrypoint and parameter schema."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from prefect.client.orchestration import get_client

from agency.settings import PROJECT_DIR
from deployments import ensure_work_pool
from flows.catalog import WORKFLOWS


def test_prefect_yaml_lists_every_prebuilt_flow() -> None:
    config = yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())
    entrypoints = {d["entrypoint"] for d in config["deployments"]}
    assert entrypoints == {m.entrypoint for m in WORKFLOWS.values()}


def test_prefect_deploy_all_creates_template_deployments(prefect_server: str) -> None:
    ensure_work_pool("agency")
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=PROJECT_DIR,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with get_client(sync_client=True) as api:
        for manifest in WORKFLOWS.values():
            flow_name = manifest.entrypoint.rsplit(":", 1)[1]
            deployment = api.read_deployment_by_name(f"{flow_name}/template")
            assert deployment.entrypoint == manifest.entrypoint
            assert deployment.work_pool_name == "agency"
            assert "agency:template" in deployment.tags
            schema = deployment.parameter_openapi_schema
            assert {"client", "settings"} <= set(schema["properties"]), schema
            assert set(schema.get("required", [])) >= {"client", "settings"}
