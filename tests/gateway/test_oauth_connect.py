"""The connect flow end to end without a browser: the gateway's /oauth/start and /oauth/callback
against the real OAuth2 authorization server of tests/fixtures/oauth_server.py (httpx plays the
browser: it keeps the gateway's cookie and submits the provider's consent form)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update

import blocks
from agency.db import OAuthState, session_scope, upgrade, utcnow
from agency.errors import AccessDenied, CredentialMissing, NotFound
from agency.settings import Settings
from services import add_client
from services.auth import Principal, authenticate, create_user
from services.connections import (
    attempt_outcome,
    list_connections,
    redirect_uri,
    register_app,
    start_connect,
)
from tests.fixtures.gateway import RunningGateway, serve
from tests.fixtures.oauth_server import OAuthServer

PASSWORD = "correct horse battery"
SCOPES = "openid email https://www.googleapis.com/auth/gmail.send "
SCOPES += "https://www.googleapis.com/auth/spreadsheets"


@dataclass
class World:
    settings: Settings
    gateway: RunningGateway
    provider: OAuthServer
    client: str
    other: str
    user: Principal
    other_user: Principal


@pytest.fixture
def world(prefect_server: str, tmp_path: Path, oauth_server: OAuthServer) -> Iterator[World]:
    settings = Settings(home=tmp_path)
    upgrade(settings.platform_database_url)
    tag = secrets.token_hex(3)
    client, other = f"oc{tag}", f"od{tag}"
    add_client(settings, client, "Acme Corp")
    add_client(settings, other, "Beta Ltd")
    create_user(settings, f"alice@{client}.test", PASSWORD, "client", client)
    create_user(settings, f"bob@{other}.test", PASSWORD, "client", other)
    running = serve(settings, run_dispatcher=False)
    settings.public_base_url = running.url  # the gateway is the public door of the callback
    oauth_server.register_client("agency-app", "app-secret", [redirect_uri(settings)], SCOPES)
    register_app(
        settings,
        None,
        "google",
        "agency-app",
        "app-secret",
        {
            "authorize_url": oauth_server.authorize_url,
            "token_url": oauth_server.token_url,
            "revoke_url": oauth_server.revoke_url,
            "userinfo_url": oauth_server.userinfo_url,
            "api_base_url": oauth_server.url,
        },
    )
    try:
        yield World(
            settings,
            running,
            oauth_server,
            client,
            other,
            authenticate(settings, f"alice@{client}.test", PASSWORD),
            authenticate(settings, f"bob@{other}.test", PASSWORD),
        )
    finally:
        running.stop()


def _consent(browser: httpx.Client, start_url: str, decision: str = "approve") -> str:
    """Open the connect link, answer the provider's consent page; return the callback URL."""
    to_provider = browser.get(start_url)
    assert to_provider.status_code == 303, to_provider.text
    authorize = to_provider.headers["location"]
    page = browser.get(authorize)
    assert page.status_code == 200 and 'id="approve"' in page.text
    answer = browser.post(authorize, data={"email": "boss@acme.com", "decision": decision})
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def _outcome_text(page: httpx.Response) -> str:
    match = re.search(r'<p id="outcome">(.*?)</p>', page.text, re.S)
    assert match, page.text
    return match.group(1)


def test_connect_stores_tokens_and_identity(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    attempt = start_connect(world.settings, world.user, "google")
    assert attempt_outcome(world.settings, world.user, attempt.id).done is False
    with httpx.Client(timeout=30) as browser:
        callback = _consent(browser, attempt.url)
        assert callback.startswith(redirect_uri(world.settings))
        page = browser.get(callback)
    assert page.status_code == 200
    assert _outcome_text(page) == "Google connected as boss@acme.com."
    outcome = attempt_outcome(world.settings, world.user, attempt.id)
    assert (outcome.done, outcome.ok) == (True, True)
    assert outcome.message == "Google connected as boss@acme.com."

    stored = blocks.load_credential(world.client, "google", "default")
    assert stored.account == "boss@acme.com"  # type: ignore[attr-defined]
    assert stored.refresh_token is not None  # type: ignore[attr-defined]
    assert "gmail.send" in stored.scope  # type: ignore[attr-defined]
    [connection] = list_connections(world.settings, world.user)
    assert (connection.kind, connection.status, connection.account) == (
        "google",
        "connected",
        "boss@acme.com",
    )
    # PKCE was used and checked by the provider
    code_request = next(r for r in world.provider.requests if r.startswith("GET /authorize"))
    assert code_request
    query = parse_qs(urlsplit(callback).query)
    assert "code" in query and "state" in query
    # no token anywhere a person or a log could see it
    token = stored.access_token.get_secret_value()  # type: ignore[attr-defined]
    refresh = stored.refresh_token.get_secret_value()  # type: ignore[attr-defined]
    assert token not in page.text and refresh not in page.text
    # the provider's own grant code (Authlib's server, in this process) logs what it issues
    ours = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("authlib.oauth2.rfc6749")
    )
    assert token not in ours and refresh not in ours


def test_denied_consent_stores_nothing(world: World) -> None:
    attempt = start_connect(world.settings, world.user, "google")
    with httpx.Client(timeout=30) as browser:
        page = browser.get(_consent(browser, attempt.url, decision="deny"))
    assert page.status_code == 400
    assert "you declined access" in _outcome_text(page)
    assert "Nothing was stored" in _outcome_text(page)
    with pytest.raises(CredentialMissing):
        blocks.load_credential(world.client, "google", "default")
    outcome = attempt_outcome(world.settings, world.user, attempt.id)
    assert (outcome.done, outcome.ok) == (True, False)


def test_replayed_state_is_refused(world: World) -> None:
    attempt = start_connect(world.settings, world.user, "google")
    with httpx.Client(timeout=30) as browser:
        callback = _consent(browser, attempt.url)
        assert browser.get(callback).status_code == 200
        again = browser.get(callback)
    assert again.status_code == 400
    assert "already used" in _outcome_text(again)


def test_a_link_opened_twice_is_refused(world: World) -> None:
    attempt = start_connect(world.settings, world.user, "google")
    with httpx.Client(timeout=30) as first, httpx.Client(timeout=30) as second:
        assert first.get(attempt.url).status_code == 303
        again = second.get(attempt.url)
    assert again.status_code == 400
    assert "already opened" in _outcome_text(again)


def test_callback_in_another_browser_is_refused(world: World) -> None:
    attempt = start_connect(world.settings, world.user, "google")
    with httpx.Client(timeout=30) as victim, httpx.Client(timeout=30) as attacker:
        callback = _consent(victim, attempt.url)
        stolen = attacker.get(callback)  # no cookie of the browser that started it
    assert stolen.status_code == 400
    assert "another browser" in _outcome_text(stolen)
    with pytest.raises(CredentialMissing):
        blocks.load_credential(world.client, "google", "default")


def test_expired_state_is_refused(world: World) -> None:
    attempt = start_connect(world.settings, world.user, "google")
    with session_scope(world.settings.platform_database_url) as session:
        session.execute(
            update(OAuthState)
            .where(OAuthState.id == attempt.id)
            .values(created_at=utcnow() - timedelta(minutes=11))
        )
    with httpx.Client(timeout=30) as browser:
        page = browser.get(attempt.url)
    assert page.status_code == 400
    assert "expired" in _outcome_text(page)


def test_unknown_state_is_refused(world: World) -> None:
    with httpx.Client(timeout=30) as browser:
        page = browser.get(f"{world.gateway.url}/oauth/callback?state=forged&code=x")
    assert page.status_code == 400
    assert "not valid" in _outcome_text(page)


def test_provider_error_stores_nothing(world: World) -> None:
    attempt = start_connect(world.settings, world.user, "google")
    with httpx.Client(timeout=30) as browser:
        callback = _consent(browser, attempt.url)
        world.provider.fail_token_with = "invalid_grant"
        page = browser.get(callback)
    assert page.status_code == 400
    assert "refused the connection (invalid_grant)" in _outcome_text(page)
    with pytest.raises(CredentialMissing):
        blocks.load_credential(world.client, "google", "default")


def test_another_client_never_sees_or_completes_a_connection(world: World) -> None:
    attempt = start_connect(world.settings, world.user, "google")
    with pytest.raises(NotFound):
        attempt_outcome(world.settings, world.other_user, attempt.id)
    with pytest.raises(AccessDenied):
        start_connect(world.settings, world.other_user, "google", client=world.client)
    with pytest.raises(AccessDenied):
        list_connections(world.settings, world.other_user, world.client)
    with httpx.Client(timeout=30) as browser:
        assert browser.get(_consent(browser, attempt.url)).status_code == 200
    assert list_connections(world.settings, world.other_user) == []
    with pytest.raises(CredentialMissing):
        blocks.load_credential(world.other, "google", "default")


def test_disconnect_revokes_at_the_provider_and_deletes_the_tokens(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from agency.settings import get_settings
    from cli.main import app

    attempt = start_connect(world.settings, world.user, "google")
    with httpx.Client(timeout=30) as browser:
        assert browser.get(_consent(browser, attempt.url)).status_code == 200
    token = blocks.load_credential(world.client, "google", "default").access_token  # type: ignore[attr-defined]
    monkeypatch.setenv("AGENCY_HOME", str(world.settings.home))
    get_settings.cache_clear()
    try:
        listed = CliRunner().invoke(app, ["connections", "list", "--client", world.client])
        revoked = CliRunner().invoke(
            app, ["connections", "revoke", "google/default", "--client", world.client]
        )
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "google/default\tconnected\tboss@acme.com" in listed.output, listed.output
    assert revoked.exit_code == 0, revoked.output
    assert "deleted google/default (revoked at the provider)" in revoked.output
    assert world.provider.revocations >= 1
    answer = httpx.get(
        world.provider.userinfo_url,
        headers={"Authorization": f"Bearer {token.get_secret_value()}"},
    )
    assert answer.status_code == 401  # the whole grant is gone at the provider
    with pytest.raises(CredentialMissing):
        blocks.load_credential(world.client, "google", "default")
    assert list_connections(world.settings, world.user) == []
