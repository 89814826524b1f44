"""The daily credential health check against real parts: the loopback OAuth2 provider (accounts
connected through the real connect flow, consent form driven with httpx), aiosmtpd as both the
notice relay and a pasted SMTP credential's server, the session's Prefect server (the embedded
secret store) and a SQLite platform DB. A broken credential emails its client and the agency
once per breakage, never a token or a password."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agency.db import AuditLog, CredentialStatus, session_scope, upgrade
from agency.settings import Settings, get_settings
from services import add_client, create_user, set_credential
from services.connections import (
    begin_authorization,
    complete_connect,
    redirect_uri,
    register_app,
    start_connect,
)
from services.health import HealthReport, check_credentials
from tests.fixtures._net import free_port
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp import ReceivedMail, SmtpServer

pytestmark = pytest.mark.usefixtures("prefect_server")

APP_ID, APP_SECRET = "agency-google-app", "s3cret-google-app-secret"
PASSWORD = "correct horse battery"
_FORM = re.compile(r'<form id="consent" method="post" action="([^"]+)">')


@dataclass
class World:
    settings: Settings
    client: str
    other: str
    client_user: str
    contact: str
    other_user: str
    staff: str
    oncall: str


def _home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    for key, value in env.items():
        monkeypatch.setenv(f"AGENCY_{key.upper()}", value)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.platform_database_url)
    return settings


@pytest.fixture
def world(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    smtp_server: SmtpServer,
    client_slug: str,
) -> Iterator[World]:
    settings = _home(
        monkeypatch,
        tmp_path,
        notify_smtp_host=smtp_server.host,
        notify_smtp_port=str(smtp_server.port),
        notify_smtp_security="none",
        notify_smtp_username=smtp_server.username,
        notify_smtp_password=smtp_server.password,
        notify_from="Agency <noreply@agency.test>",
        notify_agency_emails="oncall@agency.test",
    )
    other = f"{client_slug}x"
    w = World(
        settings,
        client_slug,
        other,
        f"alice@{client_slug}.test",
        f"owner@{client_slug}.test",
        f"bob@{other}.test",
        f"ops@{client_slug}-agency.test",
        "oncall@agency.test",
    )
    add_client(settings, w.client, "Acme Corp", contact_emails=[w.contact])
    add_client(settings, w.other, "Other Ltd")
    create_user(settings, w.client_user, PASSWORD, "client", w.client)
    create_user(settings, w.other_user, PASSWORD, "client", w.other)
    create_user(settings, w.staff, PASSWORD, "agency")
    yield w
    get_settings.cache_clear()


def _register_google(settings: Settings, server: OAuthServer) -> None:
    view = register_app(
        settings,
        None,
        "google",
        APP_ID,
        APP_SECRET,
        {
            "authorize_url": server.authorize_url,
            "token_url": f"{server.url}/token",
            "revoke_url": server.revoke_url,
            "userinfo_url": f"{server.url}/userinfo",
            "api_base_url": server.url,
        },
    )
    server.register_client(APP_ID, APP_SECRET, [redirect_uri(settings)], view.scopes)


def _connect(settings: Settings, server: OAuthServer, client: str, name: str, email: str) -> None:
    """The real connect flow, with httpx in the browser's place."""
    attempt = start_connect(settings, None, "google", name, client)
    state = parse_qs(urlsplit(attempt.url).query)["state"][0]
    consent = begin_authorization(settings, state, "browser-cookie")
    page = httpx.get(consent)
    match = _FORM.search(page.text)
    assert match, page.text
    answer = httpx.post(
        server.url + html.unescape(match.group(1)),
        data={"email": email, "decision": "approve"},
    )
    assert answer.status_code == 302, answer.text
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    outcome = complete_connect(settings, state, "browser-cookie", code=code)
    assert outcome.ok, outcome.message


def _row(settings: Settings, kind: str, name: str) -> CredentialStatus:
    with session_scope(settings.platform_database_url) as session:
        row = session.scalar(
            select(CredentialStatus).where(
                CredentialStatus.kind == kind, CredentialStatus.name == name
            )
        )
        assert row is not None
        return row


def _by(report: HealthReport) -> dict[str, tuple[str, str | None]]:
    return {f"{r.kind}/{r.name}": (r.status, r.detail) for r in report.results}


def _smtp(host: str, port: int, **extra: object) -> dict[str, object]:
    return {"host": host, "port": port, "from_address": "a@acme.test", "security": "none", **extra}


def _text(mail: ReceivedMail) -> str:
    return mail.message.as_string() + mail.message.get_content()


def _split(mails: list[ReceivedMail], w: World) -> tuple[ReceivedMail, ReceivedMail]:
    assert len(mails) == 2, [m.message["Subject"] for m in mails]
    to_client = [m for m in mails if w.client_user in m.rcpt_tos]
    to_agency = [m for m in mails if w.staff in m.rcpt_tos]
    assert len(to_client) == len(to_agency) == 1
    assert sorted(to_client[0].rcpt_tos) == sorted([w.client_user, w.contact])
    assert sorted(to_agency[0].rcpt_tos) == sorted([w.staff, w.oncall])
    return to_client[0], to_agency[0]


def test_a_revoked_connection_and_a_broken_smtp_credential_are_each_notified_once(
    world: World, oauth_server: OAuthServer, smtp_server: SmtpServer
) -> None:
    w, settings = world, world.settings
    _register_google(settings, oauth_server)
    _connect(settings, oauth_server, w.client, "default", "boss@acme.com")
    _connect(settings, oauth_server, w.client, "second", "ceo@acme.com")

    # 1. healthy: refreshed, identity read, nobody emailed
    report = check_credentials(settings)
    assert _by(report) == {
        "google/default": ("connected", "Connected as boss@acme.com."),
        "google/second": ("connected", "Connected as ceo@acme.com."),
    }
    assert oauth_server.refresh_count == 2
    assert smtp_server.messages == []
    assert _row(settings, "google", "default").checked_at is not None

    # 2. the user removes the app at Google: needs reconnect, one email each to client and agency
    oauth_server.revoke_all_grants("boss@acme.com")
    report = check_credentials(settings)
    status, detail = _by(report)["google/default"]
    assert status == "needs_reconnect" and detail and "Reconnect it under Credentials" in detail
    assert _by(report)["google/second"][0] == "connected"
    assert report.notified == [w.client]
    to_client, to_agency = _split(list(smtp_server.messages), w)
    assert "Reconnect your Google account under Credentials" in _text(to_client)
    assert "boss@acme.com" in _text(to_client) and "'default'" in _text(to_client)
    assert w.client in to_agency.message["Subject"] and "google/default" in _text(to_agency)
    assert w.other_user not in {a for m in smtp_server.messages for a in m.rcpt_tos}
    row = _row(settings, "google", "default")
    assert row.failing_since is not None and row.notified_at is not None
    secrets = [APP_SECRET, smtp_server.password]
    for token in oauth_server.tokens():
        secrets += [token.access_token, token.refresh_token or APP_SECRET]
    for mail in smtp_server.messages:
        assert not [s for s in secrets if s in _text(mail)]

    # 3. the next day: still broken, nobody emailed again
    smtp_server.reset()
    report = check_credentials(settings)
    assert _by(report)["google/default"][0] == "needs_reconnect"
    assert smtp_server.messages == [] and report.notified == []
    assert _row(settings, "google", "default").notified_at == row.notified_at

    # 4. the provider blips (HTTP 500): the status stays, nobody is emailed
    oauth_server.token_status = 500
    report = check_credentials(settings)
    second = next(r for r in report.results if r.name == "second")
    assert (second.status, second.transient) == ("connected", True)
    assert second.detail and "answered 500" in second.detail
    assert smtp_server.messages == []
    oauth_server.token_status = None

    # 5. a pasted SMTP credential whose server is gone: failing, one notice about it alone
    dead = free_port()
    set_credential(settings, w.client, "smtp", "mailer", _smtp("127.0.0.1", dead))
    report = check_credentials(settings, w.client)
    status, detail = _by(report)["smtp/mailer"]
    assert status == "failing" and f"127.0.0.1:{dead}" in (detail or "")
    to_client, _ = _split(list(smtp_server.messages), w)
    assert "SMTP credential 'mailer'" in _text(to_client)
    assert "Google" not in _text(to_client)  # already notified, not repeated

    # 6. fixed: connected, the breakage forgotten; broken again: notified again
    smtp_server.reset()
    good = _smtp(
        smtp_server.host,
        smtp_server.port,
        username=smtp_server.username,
        password=smtp_server.password,
    )
    set_credential(settings, w.client, "smtp", "mailer", good)
    assert _by(check_credentials(settings))["smtp/mailer"][0] == "connected"
    row = _row(settings, "smtp", "mailer")
    assert row.failing_since is None and row.notified_at is None
    assert smtp_server.messages == []
    set_credential(settings, w.client, "smtp", "mailer", _smtp("127.0.0.1", dead))
    check_credentials(settings)
    _split(list(smtp_server.messages), w)
    for mail in smtp_server.messages:
        assert smtp_server.password not in _text(mail)


def test_without_a_notice_relay_the_notice_is_logged_and_audited(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    client_slug: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _home(monkeypatch, tmp_path)
    assert settings.notify_smtp_host is None
    add_client(settings, client_slug, "Acme Corp", contact_emails=["owner@acme.test"])
    set_credential(settings, client_slug, "smtp", "mailer", _smtp("127.0.0.1", free_port()))
    with caplog.at_level("WARNING", logger="agency.notices"):
        report = check_credentials(settings, client_slug)
    assert [r.status for r in report.results] == ["failing"]
    lines = [r.getMessage() for r in caplog.records if r.name == "agency.notices"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "owner@acme.test" in lines[0] and "SMTP credential 'mailer'" in lines[0]
    with session_scope(settings.platform_database_url) as session:
        skipped = session.scalars(select(AuditLog).where(AuditLog.action == "notice.skipped"))
        assert len(list(skipped)) == 2
    assert _row(settings, "smtp", "mailer").notified_at is not None
    caplog.clear()
    check_credentials(settings, client_slug)
    assert not [r for r in caplog.records if r.name == "agency.notices"]
    get_settings.cache_clear()


def test_cli_check_prints_one_line_per_credential(
    world: World, oauth_server: OAuthServer, smtp_server: SmtpServer
) -> None:
    from cli.main import app

    _register_google(world.settings, oauth_server)
    _connect(world.settings, oauth_server, world.client, "default", "boss@acme.com")
    set_credential(world.settings, world.client, "smtp", "mailer", _smtp("127.0.0.1", free_port()))
    result = CliRunner().invoke(app, ["connections", "check", "--client", world.client])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "google/default\tconnected\tConnected as boss@acme.com."
    assert lines[1].startswith("smtp/mailer\tfailing\tCould not talk to 127.0.0.1:")
    assert re.fullmatch(r"2 credential\(s\) checked in \d+\.\ds, notified 1 client\(s\)", lines[2])
    code = CliRunner().invoke(app, ["connections", "check", "--client", "no-such"]).exit_code
    assert code == 2


def test_the_flow_runs_the_check(world: World) -> None:
    from services.health_flow import credential_health

    set_credential(world.settings, world.client, "smtp", "mailer", _smtp("127.0.0.1", free_port()))
    summary = credential_health(client=world.client)
    assert summary["checked"] == 1 and summary["statuses"] == {"failing": 1}
