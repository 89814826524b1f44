"""The ``db_query`` node: one parameterised SQL statement on the client's PostgreSQL (psycopg).

Protocol, with the client's ``postgres`` credential: connect (libpq, ``connect_timeout``), run
``sql`` with ``parameters`` bound server-side by psycopg (``%(name)s`` or ``%s`` placeholders;
values never enter the SQL text), fetch per ``fetch``, commit. Connection failures,
serialization failures, deadlocks and timeouts raise ``TransientNodeError`` (retried); SQL
errors (syntax, missing table, constraint, bad parameter type) and a rejected login raise
``PermanentNodeError``. Rows come back as JSON-safe dicts (decimals as strings, times as ISO 8601,
bytes as base64).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from typing import Any, Literal

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row
from pydantic import Field, field_validator

from agency.egress import postgres_target
from agency.errors import PermanentNodeError, TransientNodeError
from blocks import PostgresCredential
from nodes._base import CredentialInput, NodeOutput, NodeSpec, node_task, resolve_credential

KIND = "db_query"
CREDENTIAL_KIND = "postgres"
MAX_ROWS = 10_000
# SQLSTATE classes a retry can fix: connection (08), resources (53), operator (57: canceled,
# shutdown), serialization failure / deadlock (40001, 40P01).
_TRANSIENT_CLASSES = ("08", "53", "57")
_TRANSIENT_STATES = ("40001", "40P01")


class DbQueryInput(CredentialInput):
    """One SQL statement and its parameters."""

    sql: str = Field(
        min_length=1,
        title="SQL",
        description="One statement with %(name)s or %s placeholders; never format values in.",
    )
    parameters: dict[str, Any] | list[Any] = Field(
        default_factory=dict, title="Parameters", description="Values bound to the placeholders."
    )
    fetch: Literal["none", "one", "all", "many"] = Field(
        default="all", title="Fetch", description="none, one row, all rows, or up to `limit`."
    )
    limit: int = Field(
        default=100, ge=1, le=MAX_ROWS, title="Row limit", description="Rows for fetch=many."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, title="Timeout", description="Connect and statement timeout."
    )

    @field_validator("sql")
    @classmethod
    def _one_statement(cls, value: str) -> str:
        if ";" in value.strip().rstrip(";"):
            raise ValueError("one statement only (no ';' inside)")
        return value


class DbQueryOutput(NodeOutput):
    """What the statement returned."""

    rows: list[dict[str, Any]] = Field(title="Rows", description="Fetched rows, JSON-safe.")
    columns: list[str] = Field(title="Columns", description="Column names of the result.")
    row_count: int = Field(
        title="Row count", description="Rows affected or returned, as the server reports (-1)."
    )
    truncated: bool = Field(
        default=False, title="Truncated", description="More rows existed than were fetched."
    )


def json_safe(value: Any) -> Any:
    """A JSON-serialisable form of a value psycopg returns."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    return str(value)


def _error(where: str, exc: psycopg.Error) -> Exception:
    state = exc.sqlstate or ""
    lines = str(exc).splitlines()
    detail = exc.diag.message_primary or (lines[0] if lines else type(exc).__name__)
    if isinstance(exc, pgerrors.InvalidPassword | pgerrors.InvalidAuthorizationSpecification):
        return PermanentNodeError(f"PostgreSQL {where} rejected the login: {detail}")
    if isinstance(exc, pgerrors.QueryCanceled):
        return TransientNodeError(f"PostgreSQL {where}: statement timed out ({detail}).")
    if state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES:
        return TransientNodeError(f"PostgreSQL {where} failed ({state}): {detail}")
    if isinstance(exc, psycopg.OperationalError) and not state:
        return TransientNodeError(f"Cannot reach PostgreSQL {where}: {detail}")
    return PermanentNodeError(f"PostgreSQL {where} rejected the statement ({state}): {detail}")


@node_task(KIND, timeout_seconds=600)
def db_query(params: DbQueryInput) -> DbQueryOutput:
    """Run one statement with bound parameters and return its rows.

    Example::

        db_query(DbQueryInput(client="acme", credential="crm", fetch="one",
                              sql="SELECT name FROM leads WHERE email = %(email)s",
                              parameters={"email": "a@example.com"})).rows[0]["name"]
    """
    cred = resolve_credential(params.client, CREDENTIAL_KIND, params.credential, PostgresCredential)
    where = f"{cred.host}:{cred.port}/{cred.database}"
    timeout_ms = int(params.timeout_seconds * 1000)
    try:
        with psycopg.connect(
            **postgres_target(cred.host, cred.port),
            dbname=cred.database,
            user=cred.username,
            password=cred.password.get_secret_value() if cred.password else None,
            sslmode=cred.sslmode,
            connect_timeout=max(1, int(params.timeout_seconds)),
            options=f"-c statement_timeout={timeout_ms}",
            row_factory=dict_row,
        ) as conn:
            with conn.cursor() as cursor:
                # The statement is the caller's text; values only ever travel as parameters.
                cursor.execute(params.sql, params.parameters or None)  # type: ignore[arg-type]
                columns = [c.name for c in cursor.description or []]
                truncated = False
                if params.fetch == "none" or cursor.description is None:
                    rows: list[dict[str, Any]] = []
                elif params.fetch == "one":
                    row = cursor.fetchone()
                    rows = [row] if row is not None else []
                else:
                    size = params.limit if params.fetch == "many" else MAX_ROWS
                    rows = cursor.fetchmany(size)
                    truncated = cursor.fetchone() is not None
                row_count = cursor.rowcount
    except psycopg.Error as exc:
        raise _error(where, exc) from None
    if truncated and params.fetch == "all":
        raise PermanentNodeError(
            f"The query returned more than {MAX_ROWS} rows; use fetch=many with a limit."
        )
    return DbQueryOutput(
        rows=[{k: json_safe(v) for k, v in r.items()} for r in rows],
        columns=columns,
        row_count=row_count,
        truncated=truncated,
    )


SPEC = NodeSpec(
    kind=KIND,
    title="Database query",
    description=(
        "Run one parameterised SQL statement on the client's PostgreSQL; fetch none, one, all "
        "or many rows (with a limit) as JSON-safe dicts."
    ),
    input_model=DbQueryInput,
    output_model=DbQueryOutput,
    credential_kind=CREDENTIAL_KIND,
    task=db_query,
    example={
        "client": "acme",
        "credential": "crm",
        "sql": "SELECT id, name FROM leads WHERE email = %(email)s",
        "parameters": {"email": "a@example.com"},
        "fetch": "one",
    },
)
