"""``nodes/db_query.py`` against the real PostgreSQL at 127.0.0.1:5432 (a throwaway database)."""

from __future__ import annotations

import base64
import secrets

import psycopg
import pytest
from pydantic import ValidationError
from sqlalchemy import make_url

from agency.errors import PermanentNodeError, TransientNodeError
from blocks import save_credential
from nodes import DbQueryInput, DbQueryOutput, db_query
from tests.fixtures._net import free_port
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

INJECTION = "Robert'); DROP TABLE leads; --"


@pytest.fixture
def client() -> str:
    return f"dbq-{secrets.token_hex(3)}"


@pytest.fixture
def credential(client: str, postgresql_database_url: str) -> str:
    url = make_url(postgresql_database_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as conn:
        conn.execute(
            "CREATE TABLE leads (id serial PRIMARY KEY, name text NOT NULL, score numeric(5,2),"
            " seen timestamptz DEFAULT '2024-05-01T12:00:00Z', tag uuid, blob bytea)"
        )
    save_credential(
        client,
        "postgres",
        "crm",
        {"host": url.host, "port": url.port, "database": url.database, "username": url.username},
    )
    return "crm"


def _run(client: str, credential: str, sql: str, **kw: object) -> DbQueryOutput:
    run = run_node(db_query, DbQueryInput(client=client, credential=credential, sql=sql, **kw))
    assert isinstance(run.result, DbQueryOutput), run.result
    return run.result


def test_insert_then_fetch_modes_with_json_safe_rows(client: str, credential: str) -> None:
    insert = (
        "INSERT INTO leads (name, score, tag, blob) VALUES (%(name)s, %(score)s, %(tag)s, %(b)s)"
    )
    tag = "6f1c2d3e-0000-4000-8000-000000000001"
    for i in range(3):
        params = {"name": f"lead{i}", "score": 10.5 + i, "tag": tag, "b": b"\x00\x01"}
        out = _run(client, credential, insert, parameters=params, fetch="none")
        assert out.row_count == 1 and out.rows == []

    every = _run(client, credential, "SELECT * FROM leads ORDER BY id")
    assert every.columns == ["id", "name", "score", "seen", "tag", "blob"]
    assert every.rows[0] == {
        "id": 1,
        "name": "lead0",
        "score": "10.50",
        "seen": "2024-05-01T12:00:00+00:00",
        "tag": tag,
        "blob": base64.b64encode(b"\x00\x01").decode(),
    }
    assert len(every.rows) == 3 and not every.truncated

    one = _run(
        client, credential, "SELECT name FROM leads WHERE id = %s", parameters=[2], fetch="one"
    )
    assert one.rows == [{"name": "lead1"}]
    none = _run(client, credential, "SELECT name FROM leads WHERE id = %s", parameters=[9])
    assert none.rows == []

    many = _run(client, credential, "SELECT id FROM leads ORDER BY id", fetch="many", limit=2)
    assert many.rows == [{"id": 1}, {"id": 2}] and many.truncated


def test_an_injection_attempt_is_stored_as_data(client: str, credential: str) -> None:
    _run(
        client,
        credential,
        "INSERT INTO leads (name) VALUES (%(name)s)",
        parameters={"name": INJECTION},
        fetch="none",
    )

    out = _run(
        client, credential, "SELECT name FROM leads WHERE name = %(n)s", parameters={"n": INJECTION}
    )
    assert out.rows == [{"name": INJECTION}]  # and the table is still there to be read


def test_a_sql_error_fails_once(client: str, credential: str) -> None:
    run = run_node(
        db_query, DbQueryInput(client=client, credential=credential, sql="SELECT * FROM nope")
    )

    assert isinstance(run.error, PermanentNodeError)
    assert "42P01" in str(run.error) and 'relation "nope" does not exist' in str(run.error)
    assert run.attempts() == 1


def test_an_unreachable_server_is_transient_and_retried(client: str) -> None:
    save_credential(
        client,
        "postgres",
        "down",
        {"host": "127.0.0.1", "port": free_port(), "database": "x", "username": "postgres"},
    )

    run = run_node(
        db_query,
        DbQueryInput(client=client, credential="down", sql="SELECT 1", timeout_seconds=2),
        retries=1,
    )

    assert isinstance(run.error, TransientNodeError)
    assert run.attempts() == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sql": "SELECT 1; DROP TABLE leads"}, "sql"),
        ({"sql": "SELECT 1", "fetch": "some"}, "fetch"),
        ({"sql": "SELECT 1", "limit": 0}, "limit"),
    ],
)
def test_bad_params_fail_validation_naming_the_param(params: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DbQueryInput.model_validate({"client": "acme", "credential": "crm", **params})

    assert info.value.errors()[0]["loc"][0] == field
