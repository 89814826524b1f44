"""A client pinned to a release in the S3 store (moto's server; AWS cannot run here) runs it
through a real Prefect process worker: the run's pull steps fetch the release from S3 into the
worker's empty cache, verify it, and the flow imports that code, not the working tree's."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
from prefect_aws import AwsClientParameters, AwsCredentials

from agency.db import upgrade
from agency.settings import Settings
from services import activate, add_client
from services.releases import create_release
from tests.deployments.test_releases import _run, _write_probe, make_project, register_probe
from tests.fixtures.s3 import S3Server


def test_a_client_on_an_s3_release_runs_it_through_a_worker(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    prefect_worker: Any,
    client_slug: str,
) -> None:
    register_probe(monkeypatch)
    # this process uploads with the default AWS chain; the worker's runs load the block
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    project = make_project(tmp_path)
    block = f"releases-{secrets.token_hex(3)}"
    AwsCredentials(
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
        region_name=s3_server.region,
        # prefect-aws's pull_from_s3 takes the block's client parameters over the step's
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint_url),
    ).save(block, overwrite=True)
    settings = Settings(
        home=tmp_path / "home",
        project_dir=project,
        work_pool=prefect_worker.pool,
        release_store="s3",
        release_s3_bucket=s3_server.bucket,
        release_s3_endpoint_url=s3_server.endpoint_url,
        release_s3_credentials_block=block,
    )
    upgrade(settings.platform_database_url)
    v1 = create_release(settings, "release_probe")
    keys = s3_server.client().list_objects_v2(Bucket=s3_server.bucket)["Contents"]
    assert any(k["Key"].endswith(f"{v1.digest}/release.json") for k in keys)

    out = tmp_path / "out.json"
    add_client(settings, client_slug, client_slug)
    view = activate(
        settings, client_slug, "release_probe", {"out": str(out)}, None, release=v1.short
    )
    assert view.release == v1.short and view.deployment_id
    _write_probe(project, "edited in the working tree")  # never what the client runs
    cached = settings.releases_dir / v1.digest
    shutil.rmtree(cached)  # the worker's cache is empty: only S3 has the release

    record = _run(view.deployment_id, out)
    assert record["marker"] == "v1"
    assert record["flows_from"].startswith(str(cached))
    assert json.loads((cached / "release.json").read_text())["workflow"] == "release_probe"
