"""Release stores: a folder under ``AGENCY_HOME`` (embedded default) or an S3 bucket.

A store keeps each release under its digest and tells a deployment how to fetch it: the Prefect
pull steps and job variables that make a flow run import the release's code, never the
working tree's. Releases are written once; putting an existing digest again is a no-op.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from agency.settings import Settings
from deployments.releases.snapshot import MANIFEST_FILE, Snapshot, digest_of


class ReleaseStore(Protocol):
    """Where releases live and how a flow run fetches one."""

    def put(self, snapshot: Snapshot) -> None:
        """Store a built release (idempotent by digest)."""

    def local_path(self, digest: str) -> Path:
        """A local folder holding the release (fetched first when the store is remote)."""

    def pull_steps(self, digest: str) -> list[dict[str, Any]]:
        """Prefect pull steps that leave a flow run in the release's folder."""

    def job_variables(self, digest: str) -> dict[str, Any]:
        """Job variables that put the release first on the run's ``sys.path``."""


def _publish(source: Path, target: Path) -> None:
    """Move a built folder to ``target`` atomically; an existing target wins (same digest)."""
    if target.exists():
        shutil.rmtree(source, ignore_errors=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    for file in source.rglob("*"):
        if file.is_file():
            file.chmod(0o444)  # a release is never edited in place
    try:
        os.replace(source, target)
    except OSError:  # a concurrent put of the same digest won
        shutil.rmtree(source, ignore_errors=True)


def _enter_step(directory: Path) -> dict[str, Any]:
    return {"deployments.releases.pull.enter_release": {"directory": str(directory)}}


def _verify_step(directory: Path, digest: str) -> dict[str, Any]:
    return {
        "deployments.releases.pull.verify_release": {"directory": str(directory), "digest": digest}
    }


class LocalReleaseStore:
    """Releases as folders ``<root>/<digest>`` on a disk the workers share."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, snapshot: Snapshot) -> None:
        _publish(snapshot.directory, self.root / snapshot.digest)

    def local_path(self, digest: str) -> Path:
        path = self.root / digest
        if not (path / MANIFEST_FILE).is_file():
            raise FileNotFoundError(f"Release {digest[:12]} is not in the store at {self.root}.")
        return path

    def pull_steps(self, digest: str) -> list[dict[str, Any]]:
        path = self.root / digest
        return [_enter_step(path), _verify_step(path, digest)]

    def job_variables(self, digest: str) -> dict[str, Any]:
        return {"env": {"PYTHONPATH": str(self.root / digest)}}


class S3ReleaseStore:
    """Releases under ``s3://<bucket>/<prefix>/<digest>/``, fetched by prefect-aws's
    ``pull_from_s3`` into ``<cache>/<digest>`` on the worker.

    Uploads use ``push_to_s3`` (PUT Object per file); the pull lists the prefix
    (ListObjectsV2) and GETs each object.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        cache: Path,
        *,
        endpoint_url: str | None = None,
        credentials_block: str | None = None,
        credentials: dict[str, Any] | None = None,
    ) -> None:
        self.bucket, self.prefix, self.cache = bucket, prefix.strip("/"), cache
        self.endpoint_url = endpoint_url
        self.credentials_block = credentials_block
        self.credentials = credentials  # only for this process's own uploads and fetches

    def _folder(self, digest: str) -> str:
        return f"{self.prefix}/{digest}" if self.prefix else digest

    def _client_parameters(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}

    def put(self, snapshot: Snapshot) -> None:
        from prefect_aws.deployments.steps import push_to_s3

        previous = Path.cwd()
        os.chdir(snapshot.directory)
        try:
            push_to_s3(
                self.bucket,
                self._folder(snapshot.digest),
                credentials=self.credentials,
                client_parameters=self._client_parameters(),
                ignore_file=None,
            )
        finally:
            os.chdir(previous)
        _publish(snapshot.directory, self.cache / snapshot.digest)

    def local_path(self, digest: str) -> Path:
        path = self.cache / digest
        if (path / MANIFEST_FILE).is_file():
            return path
        from prefect_aws.deployments.steps import pull_from_s3

        scratch = Path(tempfile.mkdtemp(prefix=".pull-", dir=self._ensure_cache()))
        previous = Path.cwd()
        os.chdir(scratch)
        try:
            pull_from_s3(
                self.bucket,
                self._folder(digest),
                credentials=self.credentials,
                client_parameters=self._client_parameters(),
            )
        finally:
            os.chdir(previous)
        if not (scratch / MANIFEST_FILE).is_file() or digest_of(scratch)[0] != digest:
            shutil.rmtree(scratch, ignore_errors=True)
            raise FileNotFoundError(f"Release {digest[:12]} is missing or altered in S3.")
        _publish(scratch, path)
        return path

    def _ensure_cache(self) -> Path:
        self.cache.mkdir(parents=True, exist_ok=True)
        return self.cache

    def pull_steps(self, digest: str) -> list[dict[str, Any]]:
        path = self.cache / digest
        pull: dict[str, Any] = {"bucket": self.bucket, "folder": self._folder(digest)}
        if self.credentials_block:
            block = self.credentials_block
            pull["credentials"] = "{{ prefect.blocks.aws-credentials." + block + " }}"
        if self.endpoint_url:
            pull["client_parameters"] = self._client_parameters()
        return [
            _enter_step(path),
            {"prefect_aws.deployments.steps.pull_from_s3": pull},
            _verify_step(path, digest),
        ]

    def job_variables(self, digest: str) -> dict[str, Any]:
        return {"env": {"PYTHONPATH": str(self.cache / digest)}}


def release_store(settings: Settings) -> ReleaseStore:
    """The store the settings choose (``release_store``)."""
    if settings.release_store == "s3":
        if not settings.release_s3_bucket:
            raise ValueError("AGENCY_RELEASE_S3_BUCKET must be set when release_store is 's3'.")
        return S3ReleaseStore(
            settings.release_s3_bucket,
            settings.release_s3_prefix,
            settings.releases_dir,
            endpoint_url=settings.release_s3_endpoint_url,
            credentials_block=settings.release_s3_credentials_block,
        )
    return LocalReleaseStore(settings.releases_dir)


__all__ = ["LocalReleaseStore", "ReleaseStore", "S3ReleaseStore", "release_store"]
