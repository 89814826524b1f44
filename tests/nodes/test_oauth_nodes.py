"""Nodes with connected accounts (OAuth2) against the real test authorization server and its
provider APIs: Gmail and Graph mail, a Slack bot, HubSpot through ``http_request``, Sheets; token
refresh before the call, a revoked grant, and no token in logs or errors.

Tokens come from the server's own consent form and token endpoint (driven with httpx, no
browser); the agency's apps point every provider at the server (``api_base_url``).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from agency.db import Client, health_row, session_scope, upgrade
from agency.errors import CredentialInvalid, InputInvalid
from agency.settings import get_settings
from blocks import get_secret_store, load_credential, save_credential
from blocks.kinds import OAuthCredential
from blocks.oauth import BUILTIN_PROVIDERS, OAUTH_AREA, save_app
from flows.catalog import get_workflow
from nodes import (
    Attachment,
    GoogleSheetsAppendInput,
    GoogleSheetsAppendOutput,
    HttpRequestInput,
    NotifyInput,
    NotifyOutput,
    SendEmailInput,
    SendEmailOutput,
    google_sheets_append,
    http_request,
    notify,
    send_email,
)
from tests.fixtures.oauth_server import OAuthServer
from tests.nodes import NodeRun, run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

ACCOUNT = "boss@acme.com"
REDIRECT = "http://127.0.0.1:9/oauth/callback"
SCOPE = "openid email gmail.send spreadsheets chat:write crm.objects.contacts.read"
APP_SECRET = "app-secret-for-tests"
_PROVIDER_LOGGER = "authlib.oauth2.rfc6749.grants"


# -- shared set-up (also used by tests/blocks/test_oauth_tokens.py) ----------------------------


def add_client(database_url: str, slug: str) -> None:
    """The client's row in the platform DB (a refresh locks the credential's health row)."""
    with session_scope(database_url) as session:
        session.add(Client(slug=slug, name=slug.title()))


def register_app(server: OAuthServer, provider: str) -> None:
    """Register the agency's app for ``provider`` at the server and in the secret store."""
    client_id = f"{provider}-app"
    method = BUILTIN_PROVIDERS[provider].token_auth_method
    server.register_client(client_id, APP_SECRET, [REDIRECT], SCOPE, method)
    overrides = {
        "authorize_url": server.authorize_url,
        "token_url": server.token_url,
        "revoke_url": server.revoke_url,
        "userinfo_url": server.userinfo_url,
        "api_base_url": server.url,
    }
    save_app(get_secret_store(area=OAUTH_AREA), provider, client_id, APP_SECRET, overrides)


def consent_tokens(server: OAuthServer, provider: str, email: str = ACCOUNT) -> dict[str, Any]:
    """Approve the app on the consent page and trade the code (PKCE) for tokens."""
    client_id = f"{provider}-app"
    verifier = secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(8),
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    answer = httpx.post(
        f"{server.authorize_url}?{urlencode(query)}", data={"email": email, "decision": "approve"}
    )
    assert answer.status_code == 302, answer.text
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    if BUILTIN_PROVIDERS[provider].token_auth_method == "client_secret_post":
        token = httpx.post(
            server.token_url, data={**data, "client_id": client_id, "client_secret": APP_SECRET}
        )
    else:
        token = httpx.post(server.token_url, data=data, auth=(client_id, APP_SECRET))
    assert token.status_code == 200, token.text
    return dict(token.json())


def connect(
    server: OAuthServer,
    client: str,
    provider: str,
    name: str = "default",
    *,
    expired: bool = False,
) -> dict[str, Any]:
    """Store a connected ``provider`` account of ``client`` as the connect flow would; with
    ``expired`` its access token is already past its expiry. Returns the token answer."""
    register_app(server, provider)
    token = consent_tokens(server, provider)
    save_credential(
        client,
        provider,
        name,
        {
            "provider": provider,
            "access_token": token["access_token"],
            "refresh_token": token["refresh_token"],
            "expires_at": time.time() + (-120 if expired else token["expires_in"]),
            "account": ACCOUNT,
            "scope": token["scope"],
        },
    )
    return token


def stored(client: str, kind: str, name: str = "default") -> OAuthCredential:
    credential = load_credential(client, kind, name)
    assert isinstance(credential, OAuthCredential)
    return credential


def health_status(database_url: str, client: str, kind: str, name: str = "default") -> str | None:
    with session_scope(database_url) as session:
        row = health_row(session, client, kind, name)
        return row.status if row else None


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform_db() -> str:
    url = get_settings().platform_database_url
    upgrade(url)
    return url


@pytest.fixture
def client(platform_db: str) -> str:
    slug = f"oauth-{secrets.token_hex(3)}"
    add_client(platform_db, slug)
    return slug


@pytest.fixture
def server(oauth_server: OAuthServer) -> OAuthServer:
    return oauth_server


def _mail(client: str, credential: str, **fields: Any) -> SendEmailInput:
    values: dict[str, Any] = {
        "client": client,
        "credential": credential,
        "to": ["Ann <ann@example.com>"],
        "subject": "Report for {{ name }}",
        "text": "Hello {{ name }}, total {{ total }}.",
        "context": {"name": "Ann", "total": 42},
    }
    return SendEmailInput(**{**values, **fields})


def _run_logs(run: NodeRun, expected: str) -> list[str]:
    """The run's log messages on the Prefect server, once ``expected`` has arrived."""
    deadline = time.monotonic() + 15
    messages: list[str] = []
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as api:
            logs = api.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.flow_run_id])))
        messages = [log.message for log in logs]
        if any(expected in m for m in messages):
            break
        time.sleep(0.3)
    return messages


# -- send_email ---------------------------------------------------------------------------------


def test_gmail_send_delivers_the_rendered_message_from_the_connected_account(
    server: OAuthServer, client: str
) -> None:
    connect(server, client, "google")
    params = _mail(
        client,
        "google/default",
        cc=["bob@example.com"],
        bcc=["audit@acme.test"],
        html="<p>Hello <b>{{ name }}</b></p>",
        attachments=[Attachment(filename="report.csv", content="a,b\n1,2\n")],
    )

    run = run_node(send_email, params)

    out = run.result
    assert isinstance(out, SendEmailOutput), out
    assert out.accepted == ["Ann <ann@example.com>", "bob@example.com", "audit@acme.test"]
    (call,) = server.api_calls
    assert call["path"] == "/gmail/v1/users/me/messages/send"
    assert call["account"] == ACCOUNT and "gmail.send" in call["scope"]
    message = call["message"]
    assert message["From"] == ACCOUNT
    assert message["To"] == "Ann <ann@example.com>" and message["Cc"] == "bob@example.com"
    assert message["Bcc"] == "audit@acme.test"  # Gmail reads it from the message, then strips it
    assert message["Subject"] == "Report for Ann"
    assert message["Message-ID"] == out.message_id
    assert message.get_body(("plain",)).get_content().strip() == "Hello Ann, total 42."
    assert message.get_body(("html",)).get_content().strip() == "<p>Hello <b>Ann</b></p>"
    (csv,) = message.iter_attachments()
    assert (csv.get_filename(), csv.get_payload(decode=True)) == ("report.csv", b"a,b\n1,2\n")
    assert run.attempts() == 1


def test_graph_send_posts_the_message_as_graph_json(server: OAuthServer, client: str) -> None:
    connect(server, client, "microsoft", "outlook")
    png = base64.b64encode(b"\x89PNG fake").decode()
    params = _mail(
        client,
        "microsoft/outlook",
        cc=["bob@example.com"],
        reply_to="sales@acme.test",
        html="<p>Hi {{ name }}</p>",
        attachments=[Attachment(filename="logo.png", content=png, encoding="base64")],
    )

    run = run_node(send_email, params)

    out = run.result
    assert isinstance(out, SendEmailOutput), out
    (call,) = server.api_calls
    assert call["path"] == "/v1.0/me/sendMail" and call["account"] == ACCOUNT
    message = call["json"]["message"]
    assert message["subject"] == "Report for Ann"
    assert message["body"]["contentType"] == "HTML"
    assert message["body"]["content"].strip() == "<p>Hi Ann</p>"
    assert message["toRecipients"] == [
        {"emailAddress": {"address": "ann@example.com", "name": "Ann"}}
    ]
    assert message["ccRecipients"] == [{"emailAddress": {"address": "bob@example.com"}}]
    assert message["bccRecipients"] == []
    assert message["replyTo"] == [{"emailAddress": {"address": "sales@acme.test"}}]
    (attachment,) = message["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert attachment["name"] == "logo.png" and attachment["contentType"] == "image/png"
    assert base64.b64decode(attachment["contentBytes"]) == b"\x89PNG fake"
    assert message["internetMessageId"] == out.message_id


def test_a_kind_that_is_no_mailbox_fails_once_in_plain_words(client: str) -> None:
    run = run_node(send_email, _mail(client, "slack/default"))

    assert "google/<name>, microsoft/<name>" in str(run.error), run.error
    assert run.attempts() == 1


# -- notify with a Slack bot --------------------------------------------------------------------


def test_slack_bot_posts_to_the_channel(server: OAuthServer, client: str) -> None:
    connect(server, client, "slack", "team")
    params = NotifyInput(
        client=client,
        credential="slack/team",
        slack_channel="#sales",
        text="{{ n }} hot leads",
        context={"n": 3},
    )

    run = run_node(notify, params)

    out = run.result
    assert isinstance(out, NotifyOutput), out
    assert out.channel == "slack" and out.status == 200 and out.text == "3 hot leads"
    (call,) = server.api_calls
    assert call["path"] == "/api/chat.postMessage" and call["account"] == ACCOUNT
    assert call["json"] == {"channel": "#sales", "text": "3 hot leads"}
    assert out.message_id and "." in out.message_id  # Slack's message ts


def test_slack_invalid_auth_is_credential_invalid(server: OAuthServer, client: str) -> None:
    connect(server, client, "slack", "team")
    server.revoke_all_grants()  # the workspace removed the app; the token is not expired yet

    run = run_node(
        notify,
        NotifyInput(client=client, credential="slack/team", slack_channel="#sales", text="hi"),
    )

    assert isinstance(run.error, CredentialInvalid), run.error
    assert str(run.error) == (
        "Slack refused the connection 'team' (invalid_auth): reconnect it under Credentials."
    )
    assert run.attempts() == 1
    assert server.api_calls == []


def test_slack_bot_needs_a_channel() -> None:
    with pytest.raises(ValueError, match="slack_channel is required"):
        NotifyInput(client="acme", credential="slack/team", text="hi")
    with pytest.raises(ValueError, match="slack_channel works only with a Slack bot"):
        NotifyInput(client="acme", credential="alerts", slack_channel="#x", text="hi")


# -- http_request with a connected account ------------------------------------------------------


def test_http_request_with_a_hubspot_connection(server: OAuthServer, client: str) -> None:
    connect(server, client, "hubspot", "crm")
    url = f"{server.url}/crm/v3/objects/contacts"

    run = run_node(
        http_request,
        HttpRequestInput(client=client, url=url, query={"limit": 1}, credential="hubspot/crm"),
    )

    assert run.error is None, run.error
    assert run.result.status == 200
    assert [c["properties"]["email"] for c in run.result.body["results"]] == ["ada@example.com"]
    (call,) = server.api_calls
    assert call["path"] == "/crm/v3/objects/contacts" and call["account"] == ACCOUNT


def test_http_request_401_with_a_connection_says_reconnect(
    server: OAuthServer, client: str
) -> None:
    connect(server, client, "hubspot", "crm")
    server.revoke_all_grants()
    url = f"{server.url}/crm/v3/objects/contacts"

    run = run_node(http_request, HttpRequestInput(client=client, url=url, credential="hubspot/crm"))

    assert isinstance(run.error, CredentialInvalid), run.error
    assert "HubSpot refused the connection 'crm' (HTTP 401)" in str(run.error)
    assert "reconnect it under Credentials" in str(run.error)
    assert run.attempts() == 1


# -- google_sheets_append -----------------------------------------------------------------------


def test_google_sheets_append_writes_rows_below_the_table(server: OAuthServer, client: str) -> None:
    connect(server, client, "google")
    rows: list[list[Any]] = [["Ann", "ann@example.com", 91], ["Bob", "bob@example.com", 55]]

    first = run_node(
        google_sheets_append,
        GoogleSheetsAppendInput(
            client=client, spreadsheet_id="sheet-1", range="Leads!A1", rows=rows
        ),
    )
    second = run_node(
        google_sheets_append,
        GoogleSheetsAppendInput(
            client=client,
            credential="google/default",
            spreadsheet_id="sheet-1",
            range="Leads!A1",
            rows=[["Cy", "cy@example.com", None]],
            value_input_option="RAW",
        ),
    )

    assert first.result == GoogleSheetsAppendOutput(updated_rows=2, updated_range="Leads!A1:C2")
    assert second.result == GoogleSheetsAppendOutput(updated_rows=1, updated_range="Leads!A3:C3")
    assert server.spreadsheets["sheet-1"]["Leads"] == [*rows, ["Cy", "cy@example.com", None]]
    assert [c["path"] for c in server.api_calls] == [
        "/v4/spreadsheets/sheet-1/values/Leads!A1:append"
    ] * 2


# -- refresh, revocation, secrecy ---------------------------------------------------------------


def test_an_expired_token_is_refreshed_once_and_the_new_tokens_are_stored(
    server: OAuthServer, client: str, platform_db: str
) -> None:
    old = connect(server, client, "google", expired=True)
    params = GoogleSheetsAppendInput(client=client, spreadsheet_id="s", rows=[["a"]])

    first = run_node(google_sheets_append, params)

    assert first.error is None, first.error
    assert server.refresh_count == 1
    assert server.refresh_tokens_seen == [old["refresh_token"]]
    fresh = stored(client, "google")
    assert fresh.access_token.get_secret_value() != old["access_token"]
    assert fresh.refresh_token is not None
    assert fresh.refresh_token.get_secret_value() not in (old["refresh_token"], None)
    assert fresh.expires_at is not None and fresh.expires_at > time.time() + 3000
    assert fresh.account == ACCOUNT
    assert health_status(platform_db, client, "google") == "connected"

    second = run_node(google_sheets_append, params)

    assert second.error is None, second.error
    assert server.refresh_count == 1  # the stored token is fresh now
    assert len(server.api_calls) == 2


def test_a_revoked_grant_asks_to_reconnect_and_marks_the_credential(
    server: OAuthServer, client: str, platform_db: str
) -> None:
    connect(server, client, "google", expired=True)
    server.revoke_all_grants()

    run = run_node(send_email, _mail(client, "google/default"))

    assert isinstance(run.error, CredentialInvalid), run.error
    assert "Reconnect it under Credentials" in str(run.error)
    assert "Google connection 'default'" in str(run.error)
    assert run.attempts() == 1
    assert server.api_calls == []
    assert health_status(platform_db, client, "google") == "needs_reconnect"


def test_tokens_never_reach_logs_or_errors(
    server: OAuthServer, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    old = connect(server, client, "google", expired=True)
    connect(server, client, "hubspot", "crm")
    caplog.set_level(logging.DEBUG)

    sent = run_node(send_email, _mail(client, "google/default"))
    server.revoke_all_grants()
    refused = run_node(
        http_request,
        HttpRequestInput(
            client=client, url=f"{server.url}/crm/v3/objects/contacts", credential="hubspot/crm"
        ),
    )

    assert isinstance(sent.result, SendEmailOutput), sent.result
    assert isinstance(refused.error, CredentialInvalid), refused.error
    fresh = stored(client, "google")
    tokens = {
        old["access_token"],
        old["refresh_token"],
        fresh.access_token.get_secret_value(),
        fresh.refresh_token.get_secret_value() if fresh.refresh_token else "",
        *(t.access_token for t in server.tokens()),
        *(t.refresh_token or "" for t in server.tokens()),
    } - {""}
    assert len(tokens) >= 6
    texts = [
        *_run_logs(sent, "Sent "),
        *_run_logs(refused, "refused the connection"),
        # every record of this process but the test provider's own (Authlib's grants log the
        # tokens they issue at DEBUG, on the provider's side)
        *(r.getMessage() for r in caplog.records if not r.name.startswith(_PROVIDER_LOGGER)),
        str(refused.error),
        repr(refused.error),
        sent.result.model_dump_json(),
    ]
    assert any("via Google mailbox 'default'" in t for t in texts)
    leaks = [t for t in texts if any(token in t for token in tokens)]
    assert leaks == []


# -- manifests: email through SMTP or a connected mailbox ---------------------------------------


@pytest.mark.parametrize("workflow", ["daily_digest", "newsletter_approval", "review_sentiment"])
def test_an_email_workflow_takes_smtp_or_a_connected_mailbox(workflow: str) -> None:
    manifest = get_workflow(workflow)
    base = {
        "daily_digest": {"source_url": "https://x.test/a", "recipients": ["a@b.test"]},
        "newsletter_approval": {
            "source_url": "https://x.test/a",
            "recipients": ["a@b.test"],
        },
        "review_sentiment": {"reviews_url": "https://x.test/r", "recipients": ["a@b.test"]},
    }[workflow]
    (email,) = [r for r in manifest.credentials if r.setting == "smtp_credential"]
    assert email.kinds == ("smtp", "google", "microsoft")
    schema = manifest.settings_model.model_json_schema()["properties"]["smtp_credential"]
    assert "google/<name>" in schema["description"]

    def needs(value: str) -> tuple[str, str]:
        settings = manifest.validate_settings({**base, "smtp_credential": value})
        (pair,) = [p for p in manifest.required_credentials(settings) if p[1] == "boss"]
        return pair

    assert needs("boss") == ("smtp", "boss")
    assert needs("smtp/boss") == ("smtp", "boss")
    assert needs("google/boss") == ("google", "boss")
    assert needs("microsoft/boss") == ("microsoft", "boss")
    with pytest.raises(InputInvalid) as refused:
        manifest.validate_settings({**base, "smtp_credential": "slack/boss"})
    assert str(refused.value) == (
        "Setting 'smtp_credential' is 'slack/boss', but this workflow accepts only the name of "
        "one of the client's smtp credentials, or google/<name>, or microsoft/<name>."
    )
