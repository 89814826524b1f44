"""The S3 release store against a real S3 API (moto's server; AWS cannot run here): a release
pushed with prefect-aws's push step comes back byte-identical through its pull step on an
empty cache; files a run writes beside the code are tolerated, an altered file or object is
refused by its digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from agency.settings import PROJECT_DIR
from deployments.releases.pull import verify_release
from deployments.releases.snapshot import build, digest_of
from deployments.releases.store import S3ReleaseStore
from tests.fixtures.s3 import S3Server

MANIFEST = {
    "workflow": "daily_digest",
    "version": "1.0.0",
    "entrypoint": "flows/daily_digest.py:daily_digest",
}


def _store(s3: S3Server, cache: Path) -> S3ReleaseStore:
    return S3ReleaseStore(
        s3.bucket,
        "releases",
        cache,
        endpoint_url=s3.endpoint_url,
        credentials={
            "aws_access_key_id": s3.access_key_id,
            "aws_secret_access_key": s3.secret_access_key,
            "region_name": s3.region,
        },
    )


def test_s3_store_round_trip_and_tamper_check(tmp_path: Path, s3_server: S3Server) -> None:
    snapshot = build(PROJECT_DIR, tmp_path / "build", dict(MANIFEST), source="worktree")
    _store(s3_server, tmp_path / "cache-maker").put(snapshot)
    keys = [
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket)["Contents"]
    ]
    assert f"releases/{snapshot.digest}/flows/daily_digest.py" in keys
    assert len(keys) == snapshot.files

    worker = _store(s3_server, tmp_path / "cache-worker")
    fetched = worker.local_path(snapshot.digest)
    assert fetched == tmp_path / "cache-worker" / snapshot.digest
    assert digest_of(fetched)[0] == snapshot.digest
    verify_release(str(fetched), snapshot.digest)
    (fetched / "executions.log").write_text("a run may write beside its code\n")
    verify_release(str(fetched), snapshot.digest)

    steps = worker.pull_steps(snapshot.digest)
    assert [next(iter(s)) for s in steps] == [
        "deployments.releases.pull.enter_release",
        "prefect_aws.deployments.steps.pull_from_s3",
        "deployments.releases.pull.verify_release",
    ]
    assert steps[1]["prefect_aws.deployments.steps.pull_from_s3"]["folder"] == (
        f"releases/{snapshot.digest}"
    )

    flow_file = fetched / "flows" / "daily_digest.py"
    original = flow_file.read_bytes()
    flow_file.chmod(0o644)
    flow_file.write_bytes(original + b"# edited in place\n")
    with pytest.raises(RuntimeError, match="refusing to run altered code"):
        verify_release(str(fetched), snapshot.digest)
    flow_file.write_bytes(original)

    s3_server.client().put_object(
        Bucket=s3_server.bucket,
        Key=f"releases/{snapshot.digest}/flows/daily_digest.py",
        Body=b"raise SystemExit('not the release')\n",
    )
    with pytest.raises(FileNotFoundError, match="altered"):
        _store(s3_server, tmp_path / "cache-other").local_path(snapshot.digest)
