"""File storage behind one interface: a local directory (embedded default) or an S3 bucket.

Keys are namespaced per client: ``<client>/<workflow>/<run>/<name>``. S3 goes through
prefect-aws (``S3Bucket`` with ``AwsCredentials``; ``endpoint_url`` for S3-compatible services):
``PUT /<bucket>/<key>`` to write and ``GET /<bucket>/<key>`` to read, ``200`` expected; a missing
key (``404``/``NoSuchKey``) and ``403`` are permanent, ``5xx`` and connection errors transient.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Protocol

from prefect.runtime import flow_run

from agency.egress import egress_policy
from agency.errors import PermanentNodeError, TransientNodeError, status_to_error
from agency.settings import get_settings
from blocks import S3Credential
from nodes._base import current_workflow, resolve_credential

__all__ = ["FileStore", "LocalStore", "S3Store", "check_name", "open_store", "run_prefix"]

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._@+=-][A-Za-z0-9 ._@+=-]*$")


def check_name(value: str) -> str:
    """A relative file name: ``/``-separated segments, no ``..``, no empty or hidden tricks."""
    parts = value.split("/")
    if not value or any(p in ("", ".", "..") or not _SEGMENT_RE.match(p) for p in parts):
        raise ValueError(
            f"invalid file name {value!r}: use letters, digits, ' ._@+=-' and '/' between parts"
        )
    return value


def run_prefix(client: str) -> str:
    """``<client>/<workflow>/<run>`` of the current flow run (``adhoc/local`` outside one)."""
    return f"{client}/{current_workflow() or 'adhoc'}/{flow_run.id or 'local'}"


class FileStore(Protocol):
    """Where files live; keys are already namespaced and checked."""

    def write(self, key: str, content: bytes) -> str:
        """Store ``content`` under ``key``; return its URI."""
        ...

    def read(self, key: str) -> bytes:
        """The bytes stored under ``key``."""
        ...


class LocalStore:
    """Files under a local directory (``AGENCY_STORAGE_DIR``, default ``<home>/files``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*PurePosixPath(key).parts)

    def write(self, key: str, content: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(content)
        tmp.replace(path)  # readers never see half a file
        return path.as_uri()

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise PermanentNodeError(f"No file '{key}' in the local file storage.") from None


class S3Store:
    """Objects in the client's S3 bucket, through prefect-aws."""

    def __init__(self, cred: S3Credential) -> None:
        # prefect-aws pulls in boto3 and its workers: import it only when S3 is used
        from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

        if cred.endpoint_url:  # an S3-compatible service the client named
            egress_policy().check_url(cred.endpoint_url)
        self.bucket_name = cred.bucket
        self._bucket = S3Bucket(
            bucket_name=cred.bucket,
            credentials=AwsCredentials(
                aws_access_key_id=cred.access_key_id,
                aws_secret_access_key=cred.secret_access_key,
                region_name=cred.region,
                aws_client_parameters=AwsClientParameters(endpoint_url=cred.endpoint_url),
            ),
        )

    def _call(self, verb: str, key: str, fn: object, *args: object) -> object:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"{verb} s3://{self.bucket_name}/{key}"
        try:
            return fn(*args)  # type: ignore[operator]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise PermanentNodeError(f"{where}: no such file.") from None
            raise status_to_error(status)(f"{where} answered {status} ({code}).") from None
        except NoCredentialsError:
            raise PermanentNodeError(f"{where}: the s3 credential has no usable key.") from None
        except BotoCoreError as exc:
            raise TransientNodeError(f"{where} failed: {type(exc).__name__}: {exc}") from None

    def write(self, key: str, content: bytes) -> str:
        self._call("PUT", key, self._bucket.write_path, key, content)
        return f"s3://{self.bucket_name}/{key}"

    def read(self, key: str) -> bytes:
        data = self._call("GET", key, self._bucket.read_path, key)
        assert isinstance(data, bytes)
        return data


def open_store(client: str, credential: str | None) -> FileStore:
    """The client's S3 store when ``credential`` names an ``s3`` credential, else local files."""
    if credential:
        return S3Store(resolve_credential(client, "s3", credential, S3Credential))
    return LocalStore(get_settings().files_dir)
