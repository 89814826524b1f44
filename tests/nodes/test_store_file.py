"""``nodes/store_file.py`` and ``nodes/read_file.py``: local storage and a real S3 API (moto)."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest
from prefect import flow, tags
from pydantic import ValidationError

from agency.errors import PermanentNodeError
from agency.settings import get_settings
from blocks import save_credential
from nodes import (
    ReadFileInput,
    ReadFileOutput,
    StoreFileInput,
    StoreFileOutput,
    read_file,
    store_file,
)
from tests.fixtures.s3 import S3Server
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

CSV = "email,score\na@example.com,91\n"


@pytest.fixture
def client() -> str:
    return f"files-{secrets.token_hex(3)}"


def test_local_round_trip_in_the_runs_namespace(client: str) -> None:
    @flow(name="store-and-read")
    def store_and_read() -> tuple[StoreFileOutput, ReadFileOutput, ReadFileOutput, str]:
        from prefect.runtime import flow_run

        stored = store_file(StoreFileInput(client=client, name="reports/daily.csv", content=CSV))
        by_key = read_file(ReadFileInput(client=client, key=stored.key))
        by_name = read_file(ReadFileInput(client=client, name="reports/daily.csv"))
        return stored, by_key, by_name, flow_run.id

    with tags("workflow:lead_intake"):
        stored, by_key, by_name, run_id = store_and_read()

    assert stored.key == f"{client}/lead_intake/{run_id}/reports/daily.csv"
    path = get_settings().files_dir / client / "lead_intake" / run_id / "reports" / "daily.csv"
    assert path.read_text() == CSV
    assert stored.uri == path.as_uri()
    assert stored.size == len(CSV) and stored.sha256 == hashlib.sha256(CSV.encode()).hexdigest()
    assert by_key.content == by_name.content == CSV and by_key.sha256 == stored.sha256


def test_s3_round_trip_through_prefect_aws(client: str, s3_server: S3Server) -> None:
    save_credential(client, "s3", "bucket", s3_server.credential())
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00binary").decode()

    run = run_node(
        store_file,
        StoreFileInput(
            client=client, name="chart.png", content=png, encoding="base64", credential="bucket"
        ),
    )

    stored = run.result
    assert isinstance(stored, StoreFileOutput), stored
    assert stored.key == f"{client}/{run.flow_name}/{run.flow_run_id}/chart.png"
    assert stored.uri == f"s3://{s3_server.bucket}/{stored.key}"
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=stored.key)["Body"].read()
    assert body == b"\x89PNG\r\n\x1a\n\x00binary"

    read = run_node(
        read_file,
        ReadFileInput(client=client, key=stored.key, encoding="base64", credential="bucket"),
    )
    assert isinstance(read.result, ReadFileOutput), read.result
    assert read.result.content == png and read.result.size == len(body)


def test_a_missing_object_fails_once(client: str, s3_server: S3Server) -> None:
    save_credential(client, "s3", "bucket", s3_server.credential())

    run = run_node(
        read_file, ReadFileInput(client=client, key=f"{client}/x/y/nope.txt", credential="bucket")
    )

    assert isinstance(run.error, PermanentNodeError)
    assert "no such file" in str(run.error)
    assert run.attempts() == 1


def test_a_missing_local_file_fails_once(client: str) -> None:
    run = run_node(read_file, ReadFileInput(client=client, key=f"{client}/x/y/nope.txt"))

    assert isinstance(run.error, PermanentNodeError)
    assert run.attempts() == 1


@pytest.mark.parametrize(
    ("model", "params", "field"),
    [
        (StoreFileInput, {"name": "../escape.txt", "content": "x"}, "name"),
        (StoreFileInput, {"name": "/etc/passwd", "content": "x"}, "name"),
        (StoreFileInput, {"name": "a.bin", "content": "%%%", "encoding": "base64"}, None),
        (ReadFileInput, {"key": "other-client/wf/run/a.txt"}, None),
        (ReadFileInput, {"key": "acme/wf/../../other/a.txt"}, "key"),
        (ReadFileInput, {}, None),
    ],
)
def test_bad_names_and_foreign_keys_fail_validation(
    model: type, params: dict[str, object], field: str | None
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({"client": "acme", **params})

    assert info.value.errors()[0]["loc"] == ((field,) if field else ())
