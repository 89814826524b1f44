"""`prefect deploy --all` with the repo's prefect.yaml against a real Prefect server: every
prebuilt flow of the catalog gets an agency-level template deployment on the `agency` pool with
its entrypoint and parameter schema, and runs a release its build step made (pull steps into
the release folder), never the working tree.

The checkout the tests run from may have uncommitted changes (the release step would rightly
refuse them), so the deploy runs with ``AGENCY_RELEASE_ALLOW_DIRTY=1``; the refusal itself is
tested in ``test_release_steps.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client

from agency.settings import PROJECT_DIR, Settings
from deployments import ensure_work_pool
from flows.catalog import WORKFLOWS
from services.releases import list_releases


def test_prefect_yaml_lists_every_prebuilt_flow() -> None:
    config = yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())
    entrypoints = {d["entrypoint"] for d in config["deployments"]}
    assert entrypoints == {m.entrypoint for m in WORKFLOWS.values()}
    for deployment in config["deployments"]:
        [step] = deployment["build"]
        made = step["deployments.releases.steps.create_release"]
        assert WORKFLOWS[made["workflow"]].entrypoint == deployment["entrypoint"]


def test_prefect_deploy_all_creates_template_deployments(
    prefect_server: str, tmp_path: Path
) -> None:
    ensure_work_pool("agency")
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "AGENCY_HOME": str(home),
        "AGENCY_RELEASE_ALLOW_DIRTY": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
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
            [release] = list_releases(Settings(home=home), manifest.slug)
            folder = str(Settings(home=home).releases_dir / release.digest)
            assert deployment.version == f"{release.workflow_version}+{release.short}"
            [pull] = deployment.pull_steps or []
            enter, verify = pull["deployments.releases.pull.run_release_steps"]["steps"]
            assert enter == {"deployments.releases.pull.enter_release": {"directory": folder}}
            checked = verify["deployments.releases.pull.verify_release"]
            assert checked == {"directory": folder, "digest": release.digest}
            assert deployment.job_variables == {"env": {"PYTHONPATH": folder}}
