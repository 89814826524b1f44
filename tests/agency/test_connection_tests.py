""" "Test connection" per credential kind against real local servers: aiosmtpd, the
OpenAI-compatible server, PostgreSQL, the scriptable HTTP server and moto's S3. Each kind is
tried with good values (success) and with a wrong secret (a refusal naming no secret)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from agency.db import AuditLog, session_scope
from agency.errors import InputInvalid
from agency.settings import get_settings
from blocks import parse_credential
from services.connection_tests import check_connection, check_credential
from tests.fixtures.http_server import HttpServer, Reply
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.portal import PortalWorld
from tests.fixtures.s3 import S3Server
from tests.fixtures.smtp import SmtpServer


def _check(kind: str, data: dict[str, object], probe: str | None = None) -> tuple[bool, str]:
    result = check_credential(parse_credential(kind, data), probe)
    for value in data.values():
        if isinstance(value, str) and ("secret" in value or value.startswith("sk-")):
            assert value not in result.message
    return result.ok, result.message


def test_smtp_login(smtp_server: SmtpServer) -> None:
    good = {
        "host": smtp_server.host,
        "port": smtp_server.port,
        "username": smtp_server.username,
        "password": smtp_server.password,
        "from_address": "a@example.test",
        "security": "none",
    }
    assert _check("smtp", good) == (
        True,
        f"Connected to {smtp_server.host}:{smtp_server.port} as {smtp_server.username}.",
    )
    ok, message = _check("smtp", {**good, "password": "wrong-secret"})
    assert not ok and "refused the username or password" in message


def test_openai_models_list(llm_server: LlmServer) -> None:
    good = {"api_key": llm_server.api_key, "base_url": llm_server.base_url}
    ok, message = _check("openai", good)
    assert ok and "model(s) available" in message
    assert _check("openai", {**good, "api_key": "sk-wrong"}) == (
        False,
        f"{llm_server.base_url} refused the API key.",
    )


def test_postgres_select_one() -> None:
    good = {
        "host": "127.0.0.1",
        "database": "postgres",
        "username": "postgres",
        "sslmode": "disable",
    }
    assert _check("postgres", good)[0] is True
    ok, message = _check("postgres", {**good, "database": "no_such_db_for_agency"})
    assert not ok and "does not exist" in message


def test_http_auth_probe(http_server: HttpServer) -> None:
    http_server.handle(
        "/me",
        lambda req: (
            Reply(json={"ok": True})
            if req.headers.get("authorization") == "Bearer tok-secret-1"
            else Reply(status=401)
        ),
    )
    good = {"scheme": "bearer", "token": "tok-secret-1"}
    assert _check("http_auth", good, http_server.url("/me"))[0] is True
    ok, message = _check("http_auth", {**good, "token": "tok-secret-2"}, http_server.url("/me"))
    assert not ok and message.endswith("refused the credential.")
    with pytest.raises(InputInvalid, match="address of a page"):
        _check("http_auth", good, None)


def test_s3_head_bucket(s3_server: S3Server) -> None:
    good = s3_server.credential()
    assert _check("s3", good) == (True, f"Bucket {s3_server.bucket} is reachable.")
    assert _check("s3", {**good, "bucket": f"{s3_server.bucket}-missing"}) == (
        False,
        f"Bucket {s3_server.bucket}-missing does not exist.",
    )


def test_stored_credential_is_tested_for_own_client_and_audited(
    portal_world: PortalWorld, llm_server: LlmServer
) -> None:
    from services import workspace

    w = portal_world
    data = {"api_key": llm_server.api_key, "base_url": llm_server.base_url}
    workspace.save_credential(w.settings, w.a, "openai", "default", data)
    assert check_connection(w.settings, w.a, "openai", name="default").ok
    assert check_connection(w.settings, w.a, "openai", data=data).ok
    with session_scope(w.settings.platform_database_url) as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "credential.test")).all()
        assert [(r.actor, r.target, r.detail) for r in rows] == [
            (w.email_a, "openai/default", {"ok": True}),
            (w.email_a, "openai/(entered)", {"ok": True}),
        ]


@pytest.fixture
def egress_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The product's default allow-list (the test session allows loopback)."""
    monkeypatch.setenv("AGENCY_EGRESS_ALLOW", "")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_every_kind_meets_the_egress_guard_in_the_same_words(
    egress_closed: None,
    smtp_server: SmtpServer,
    llm_server: LlmServer,
    http_server: HttpServer,
    s3_server: S3Server,
) -> None:
    http_server.respond("/me", {"ok": True})
    entered: dict[str, tuple[dict[str, object], str | None]] = {
        "smtp": (
            {"host": "127.0.0.1", "port": smtp_server.port, "from_address": "a@example.test"},
            None,
        ),
        "openai": ({"api_key": "sk-x", "base_url": llm_server.base_url}, None),
        "postgres": ({"host": "127.0.0.1", "database": "postgres", "username": "postgres"}, None),
        "http_auth": ({"scheme": "bearer", "token": "tok-secret-1"}, http_server.url("/me")),
        "s3": (s3_server.credential(), None),
    }
    for kind, (data, probe) in entered.items():
        ok, message = _check(kind, data, probe)
        assert not ok, kind
        assert message.startswith("Refusing to connect to 127.0.0.1: it is a loopback address")
    assert http_server.requests_to("/me") == [] and llm_server.requests == []
    assert smtp_server.messages == []


def test_a_refused_test_is_audited_with_the_client(
    portal_world: PortalWorld, egress_closed: None
) -> None:
    w = portal_world
    data = {"api_key": "sk-x", "base_url": "http://169.254.169.254/v1"}
    result = check_connection(w.settings, w.a, "openai", data=data)
    assert not result.ok and "link-local" in result.message
    with session_scope(w.settings.platform_database_url) as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "egress.refused")).all()
    assert [(r.actor, r.target, r.detail["via"], r.detail["client"]) for r in rows] == [
        (w.email_a, "169.254.169.254", "credential.test", w.a.client)
    ]
