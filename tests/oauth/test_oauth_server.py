"""The test OAuth2 provider behaves like a real one, seen from Authlib's httpx client and httpx.

No browser: the consent form is read and submitted with httpx, and the code is taken from the
``Location`` header of the redirect (the redirect_uri itself is never contacted).
"""

from __future__ import annotations

import base64
import html
import re
import threading
import time
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from tests.fixtures.oauth_server import OAuthServer

CLIENT_ID = "agency-app"
SECRET = "s3cret-agency-app"
REDIRECT = "http://127.0.0.1:9/oauth/callback"
SCOPE = "openid email gmail.send"
_BAD = {"Authorization": "Bearer not-a-token"}
_FORM_RE = re.compile(r'<form id="consent" method="post" action="([^"]+)">')


def _register(server: OAuthServer, method: str = "client_secret_basic") -> None:
    server.register_client(CLIENT_ID, SECRET, [REDIRECT], SCOPE, method)


def _client(server: OAuthServer, method: str = "client_secret_basic", **kw: Any) -> OAuth2Client:
    return OAuth2Client(
        CLIENT_ID,
        SECRET,
        token_endpoint_auth_method=method,
        scope=SCOPE,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint=server.token_url,
        **kw,
    )


def _consent(
    authorize_url: str, decision: str = "approve", email: str = "boss@acme.com"
) -> httpx.Response:
    """Open the consent page, submit its form, and return the (unfollowed) answer."""
    page = httpx.get(authorize_url)
    assert page.status_code == 200, page.text
    match = _FORM_RE.search(page.text)
    assert match, page.text
    action = html.unescape(match.group(1))
    base = "{0.scheme}://{0.netloc}".format(urlsplit(authorize_url))
    return httpx.post(base + action, data={"email": email, "decision": decision})


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _authorize(server: OAuthServer, client: OAuth2Client, verifier: str) -> str:
    url, _state = client.create_authorization_url(server.authorize_url, code_verifier=verifier)
    return url


def _login(server: OAuthServer, client: OAuth2Client, email: str = "boss@acme.com") -> dict:
    """The whole code flow with PKCE; returns the token Authlib stored on ``client``."""
    verifier = generate_token(48)
    answer = _consent(_authorize(server, client, verifier), email=email)
    assert answer.status_code == 302, answer.text
    return dict(
        client.fetch_token(
            server.token_url,
            authorization_response=answer.headers["location"],
            code_verifier=verifier,
        )
    )


def _code(server: OAuthServer, verifier: str) -> str:
    with _client(server) as client:
        answer = _consent(_authorize(server, client, verifier))
    return _query(answer.headers["location"])["code"]


def _exchange(server: OAuthServer, code: str, verifier: str | None) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier is not None:
        data["code_verifier"] = verifier
    return httpx.post(server.token_url, data=data, auth=(CLIENT_ID, SECRET))


def _refresh(server: OAuthServer, refresh_token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return httpx.post(server.token_url, data=data, auth=(CLIENT_ID, SECRET))


def _userinfo(server: OAuthServer, access_token: str) -> httpx.Response:
    return httpx.get(server.userinfo_url, headers={"Authorization": f"Bearer {access_token}"})


@pytest.fixture
def server(oauth_server: OAuthServer) -> OAuthServer:
    _register(oauth_server)
    return oauth_server


# -- authorization code flow --------------------------------------------------------------------


def test_code_flow_with_pkce_end_to_end(server: OAuthServer) -> None:
    verifier = generate_token(48)
    with _client(server) as client:
        url, state = client.create_authorization_url(server.authorize_url, code_verifier=verifier)
        assert _query(url)["code_challenge_method"] == "S256"
        page = httpx.get(url)
        assert page.status_code == 200
        assert f'<span id="client_id">{CLIENT_ID}</span>' in page.text
        assert all(f'<li class="scope">{s}</li>' in page.text for s in SCOPE.split())
        assert '<input id="email" name="email" value="boss@acme.com">' in page.text
        assert '<button id="approve" name="decision" value="approve">' in page.text
        assert '<button id="deny" name="decision" value="deny">' in page.text

        answer = _consent(url, email="Jane.Doe@Acme.com")
        assert answer.status_code == 302
        location = answer.headers["location"]
        assert location.startswith(REDIRECT + "?")
        assert _query(location)["state"] == state and _query(location)["code"]

        token = client.fetch_token(
            server.token_url, authorization_response=location, code_verifier=verifier
        )
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] == 3600
        assert token["scope"] == SCOPE
        assert token["refresh_token"] and token["access_token"]

        me = client.get(server.userinfo_url)
    assert me.status_code == 200
    info = me.json()
    assert info["email"] == "jane.doe@acme.com" and info["name"] == "Jane Doe"
    assert info["sub"].isdigit()
    assert [t.account.email for t in server.tokens()] == ["jane.doe@acme.com"]


def test_client_secret_post_client(oauth_server: OAuthServer) -> None:
    _register(oauth_server, "client_secret_post")
    verifier = generate_token(48)
    with _client(oauth_server, "client_secret_post") as client:
        answer = _consent(_authorize(oauth_server, client, verifier))
        code = _query(answer.headers["location"])["code"]
        # the registered method is enforced: Basic is refused for this client
        basic = _exchange(oauth_server, code, verifier)
        assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
        token = client.fetch_token(oauth_server.token_url, code=code, code_verifier=verifier)
        assert token["access_token"]
        fresh = client.refresh_token(oauth_server.token_url)
    assert fresh["refresh_token"] != token["refresh_token"]
    assert oauth_server.refresh_count == 1


@pytest.mark.parametrize("verifier", ["wrong", "missing"])
def test_bad_code_verifier_is_invalid_grant(server: OAuthServer, verifier: str) -> None:
    code = _code(server, generate_token(48))
    sent = generate_token(48) if verifier == "wrong" else None
    answer = _exchange(server, code, sent)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert server.tokens() == []


def test_code_is_single_use_and_reuse_revokes_its_tokens(server: OAuthServer) -> None:
    verifier = generate_token(48)
    code = _code(server, verifier)
    first = _exchange(server, code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert _userinfo(server, access).status_code == 200

    again = _exchange(server, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert _userinfo(server, access).status_code == 401
    assert _refresh(server, first.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_expired_code_is_invalid_grant(server: OAuthServer) -> None:
    verifier = generate_token(48)
    code = _code(server, verifier)
    server._codes[code].issued_at -= 601
    assert _exchange(server, code, verifier).json()["error"] == "invalid_grant"


def test_deny_redirects_with_access_denied(server: OAuthServer) -> None:
    with _client(server) as client:
        url, state = client.create_authorization_url(server.authorize_url)
    answer = _consent(url, decision="deny")
    assert answer.status_code == 302
    params = _query(answer.headers["location"])
    assert params["error"] == "access_denied" and params["state"] == state
    assert "code" not in params


@pytest.mark.parametrize(
    ("client_id", "redirect_uri", "error"),
    [
        ("nobody", REDIRECT, "invalid_client"),
        (CLIENT_ID, "http://127.0.0.1:9/evil", "invalid_request"),
    ],
)
def test_unknown_client_or_redirect_gets_an_error_page(
    server: OAuthServer, client_id: str, redirect_uri: str, error: str
) -> None:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": "xyz",
    }
    answer = httpx.get(server.authorize_url, params=params)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert f'<span id="error">{error}</span>' in answer.text
    posted = httpx.post(
        server.authorize_url, params=params, data={"email": "a@b.c", "decision": "approve"}
    )
    assert posted.status_code == 400 and "location" not in posted.headers


def test_unregistered_scope_redirects_invalid_scope(server: OAuthServer) -> None:
    with _client(server) as client:
        url, state = client.create_authorization_url(server.authorize_url, scope="admin")
    answer = httpx.get(url)
    assert answer.status_code == 302
    params = _query(answer.headers["location"])
    assert params["error"] == "invalid_scope" and params["state"] == state


# -- refresh, revocation, removal ---------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_grant(server: OAuthServer) -> None:
    with _client(server) as client:
        first = _login(server, client)
        second = dict(client.refresh_token(server.token_url))
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == SCOPE
    assert _userinfo(server, second["access_token"]).status_code == 200

    reused = _refresh(server, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # reuse detection: the newest refresh token and its access token die too
    assert _refresh(server, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert _userinfo(server, second["access_token"]).status_code == 401
    assert server.refresh_count == 1
    assert server.refresh_tokens_seen == [
        first["refresh_token"],
        first["refresh_token"],
        second["refresh_token"],
    ]


def test_expired_access_token_is_refused(server: OAuthServer) -> None:
    server.access_token_ttl = 0
    with _client(server) as client:
        token = _login(server, client)
    assert token["expires_in"] == 0
    assert _userinfo(server, token["access_token"]).status_code == 401
    server.access_token_ttl = 3600
    fresh = _refresh(server, token["refresh_token"]).json()
    assert fresh["expires_in"] == 3600
    assert _userinfo(server, fresh["access_token"]).status_code == 200


def test_authlib_refreshes_a_token_near_expiry(server: OAuthServer) -> None:
    server.access_token_ttl = 30  # inside Authlib's 60 s leeway (it ignores expires_in=0)
    with _client(server) as client:
        token = _login(server, client)
        server.access_token_ttl = 3600
        me = client.get(server.userinfo_url)  # Authlib refreshes before sending
        assert client.token["access_token"] != token["access_token"]
    assert me.status_code == 200 and me.json()["email"] == "boss@acme.com"
    assert server.refresh_count == 1
    assert server.refresh_tokens_seen == [token["refresh_token"]]


def test_concurrent_refresh_with_one_token_loses_the_grant(server: OAuthServer) -> None:
    with _client(server) as client:
        token = _login(server, client)
    server.token_delay_seconds = 0.2
    answers: list[httpx.Response] = []

    def refresh() -> None:
        answers.append(_refresh(server, token["refresh_token"]))

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 400]
    winner = next(a for a in answers if a.status_code == 200).json()
    server.token_delay_seconds = 0
    assert _refresh(server, winner["refresh_token"]).json()["error"] == "invalid_grant"
    assert server.refresh_count == 1


def test_revoke_access_token(server: OAuthServer) -> None:
    with _client(server) as client:
        token = _login(server, client)
        answer = client.revoke_token(
            server.revoke_url, token=token["access_token"], token_type_hint="access_token"
        )
        assert answer.status_code == 200
        assert _userinfo(server, token["access_token"]).status_code == 401
        # only the access token: the grant lives on
        fresh = client.refresh_token(server.token_url)
    assert _userinfo(server, fresh["access_token"]).status_code == 200
    assert server.revocations == 1


def test_revoke_refresh_token_revokes_the_grant(server: OAuthServer) -> None:
    with _client(server) as client:
        token = _login(server, client)
        assert client.revoke_token(server.revoke_url).status_code == 200  # the refresh token
    assert _userinfo(server, token["access_token"]).status_code == 401
    assert _refresh(server, token["refresh_token"]).json()["error"] == "invalid_grant"
    assert server.revocations == 1


def test_revoke_requires_client_authentication(server: OAuthServer) -> None:
    with _client(server) as client:
        token = _login(server, client)
    answer = httpx.post(server.revoke_url, data={"token": token["access_token"]})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    wrong = httpx.post(
        server.revoke_url, data={"token": token["access_token"]}, auth=(CLIENT_ID, "nope")
    )
    assert wrong.status_code == 401
    assert _userinfo(server, token["access_token"]).status_code == 200
    assert server.revocations == 0


def test_revoke_all_grants_of_one_account_then_all(server: OAuthServer) -> None:
    with _client(server) as boss_client, _client(server) as other_client:
        boss = _login(server, boss_client)
        other = _login(server, other_client, email="other@acme.com")
    server.revoke_all_grants("Boss@acme.com")
    assert _userinfo(server, boss["access_token"]).status_code == 401
    assert _refresh(server, boss["refresh_token"]).json()["error"] == "invalid_grant"
    assert _userinfo(server, other["access_token"]).json()["email"] == "other@acme.com"

    server.revoke_all_grants()
    assert _userinfo(server, other["access_token"]).status_code == 401
    assert _refresh(server, other["refresh_token"]).json()["error"] == "invalid_grant"


def test_userinfo_requires_a_bearer_token(server: OAuthServer) -> None:
    missing = httpx.get(server.userinfo_url)
    assert missing.status_code == 401 and missing.json()["error"] == "missing_authorization"
    bad = _userinfo(server, "not-a-token")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"


# -- switches -----------------------------------------------------------------------------------


def test_fail_token_with(server: OAuthServer) -> None:
    with _client(server) as client:
        token = _login(server, client)
        server.fail_token_with = "invalid_grant"
        with pytest.raises(OAuthError) as raised:
            client.refresh_token(server.token_url)
        assert raised.value.error == "invalid_grant"
        server.reset()
        assert client.refresh_token(server.token_url)["access_token"] != token["access_token"]
    assert server.refresh_count == 1


def test_token_status(server: OAuthServer) -> None:
    with _client(server) as client:
        _login(server, client)
        server.token_status = 503
        with pytest.raises(httpx2.HTTPStatusError) as raised:  # Authlib's transport
            client.refresh_token(server.token_url)
    answer = raised.value.response
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"
    assert server.refresh_count == 0 and len(server.refresh_tokens_seen) == 1


def test_token_delay_seconds(server: OAuthServer) -> None:
    with _client(server) as client:
        token = _login(server, client)
    server.token_delay_seconds = 0.3
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.token_url,
            data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
            auth=(CLIENT_ID, SECRET),
            timeout=0.1,
        )
    time.sleep(0.3)  # the delayed request completes (and rotates) server-side
    started = time.monotonic()
    late = _refresh(server, token["refresh_token"])
    assert time.monotonic() - started >= 0.3
    assert late.json()["error"] == "invalid_grant"  # already rotated by the timed-out call


def test_reset_restores_defaults(server: OAuthServer) -> None:
    server.access_token_ttl = 5
    server.fail_token_with = "invalid_grant"
    server.token_status = 500
    server.token_delay_seconds = 1.0
    server.refresh_count = 3
    server.refresh_tokens_seen.append("x")
    server.api_calls.append({})
    server.reset()
    assert (server.access_token_ttl, server.fail_token_with, server.token_status) == (
        3600,
        None,
        None,
    )
    assert server.token_delay_seconds == 0.0 and server.refresh_count == 0
    assert server.refresh_tokens_seen == [] and server.api_calls == []
    with _client(server) as client:  # the client registration survives a reset
        assert _login(server, client)["expires_in"] == 3600


# -- provider APIs ------------------------------------------------------------------------------


def test_gmail_send(server: OAuthServer) -> None:
    message = EmailMessage()
    message["From"] = "boss@acme.com"
    message["To"] = "client@example.com"
    message["Subject"] = "Invoice 42"
    message.set_content("Please find the invoice.")
    raw = base64.urlsafe_b64encode(message.as_bytes()).decode().rstrip("=")
    url = f"{server.url}/gmail/v1/users/me/messages/send"
    with _client(server) as client:
        _login(server, client)
        answer = client.post(url, json={"raw": raw})
        no_to = EmailMessage()
        no_to["Subject"] = "nobody"
        no_to.set_content("x")
        refused = client.post(
            url, json={"raw": base64.urlsafe_b64encode(no_to.as_bytes()).decode()}
        )
    assert answer.status_code == 200
    body = answer.json()
    assert body["labelIds"] == ["SENT"] and body["id"] and body["threadId"]
    assert refused.status_code == 400
    [call] = server.api_calls
    assert call["path"] == "/gmail/v1/users/me/messages/send"
    assert call["account"] == "boss@acme.com" and call["scope"] == SCOPE
    assert call["json"] == {"raw": raw}
    assert call["message"]["Subject"] == "Invoice 42"
    assert call["message"]["To"] == "client@example.com"
    assert call["message"].get_content().strip() == "Please find the invoice."

    denied = httpx.post(url, json={"raw": raw}, headers=_BAD)
    assert denied.status_code == 401 and denied.json()["error"]["status"] == "UNAUTHENTICATED"
    assert len(server.api_calls) == 1 and server.api_rejections[-1]["path"] == call["path"]


def test_graph_send_mail(server: OAuthServer) -> None:
    url = f"{server.url}/v1.0/me/sendMail"
    mail = {
        "message": {
            "subject": "Hello",
            "body": {"contentType": "Text", "content": "Hi"},
            "toRecipients": [{"emailAddress": {"address": "client@example.com"}}],
        },
        "saveToSentItems": True,
    }
    with _client(server) as client:
        _login(server, client, email="ms@contoso.com")
        answer = client.post(url, json=mail)
    assert answer.status_code == 202 and answer.content == b""
    assert server.api_calls == [
        {"path": "/v1.0/me/sendMail", "account": "ms@contoso.com", "json": mail, "scope": SCOPE}
    ]
    denied = httpx.post(url, json=mail, headers=_BAD)
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_slack_post_message(server: OAuthServer) -> None:
    url = f"{server.url}/api/chat.postMessage"
    with _client(server) as client:
        _login(server, client)
        answer = client.post(url, json={"channel": "C123", "text": "Deployed"})
        missing = client.post(url, json={"text": "where?"})
    body = answer.json()
    assert answer.status_code == 200 and body["ok"] is True and body["channel"] == "C123"
    assert re.fullmatch(r"\d{10}\.\d{6}", body["ts"])
    assert missing.json() == {"ok": False, "error": "channel_not_found"}
    assert [c["json"] for c in server.api_calls] == [{"channel": "C123", "text": "Deployed"}]

    denied = httpx.post(url, json={"channel": "C123", "text": "x"}, headers=_BAD)
    assert denied.status_code == 200
    assert denied.json() == {"ok": False, "error": "invalid_auth"}
    assert len(server.api_calls) == 1


def test_sheets_append(server: OAuthServer) -> None:
    url = f"{server.url}/v4/spreadsheets/sheet-1/values/{quote('Leads!A1:C1')}:append"
    with _client(server) as client:
        _login(server, client)
        first = client.post(
            url,
            params={"valueInputOption": "RAW"},
            json={"values": [["a", 1, True], ["b", 2, False]]},
        )
        second = client.post(url, params={"valueInputOption": "RAW"}, json={"values": [["c"]]})
        no_option = client.post(url, json={"values": [["d"]]})
    assert first.status_code == 200
    assert first.json()["spreadsheetId"] == "sheet-1"
    assert first.json()["updates"]["updatedRows"] == 2
    assert first.json()["updates"]["updatedRange"] == "Leads!A1:C2"
    assert second.json()["updates"]["updatedRange"] == "Leads!A3:A3"
    assert no_option.status_code == 400
    assert server.spreadsheets["sheet-1"]["Leads"] == [["a", 1, True], ["b", 2, False], ["c"]]
    assert [c["path"] for c in server.api_calls] == [
        "/v4/spreadsheets/sheet-1/values/Leads!A1:C1:append"
    ] * 2
    denied = httpx.post(url, params={"valueInputOption": "RAW"}, json={"values": [["x"]]})
    assert denied.status_code == 401


def test_hubspot_contacts(server: OAuthServer) -> None:
    url = f"{server.url}/crm/v3/objects/contacts"
    with _client(server) as client:
        _login(server, client)
        answer = client.get(url)
    assert answer.status_code == 200
    emails = [c["properties"]["email"] for c in answer.json()["results"]]
    assert emails == ["ada@example.com", "grace@example.com"]
    assert server.api_calls == [
        {
            "path": "/crm/v3/objects/contacts",
            "account": "boss@acme.com",
            "json": None,
            "scope": SCOPE,
        }
    ]
    assert httpx.get(url, headers=_BAD).status_code == 401


def test_apis_refuse_expired_and_revoked_tokens(server: OAuthServer) -> None:
    url = f"{server.url}/crm/v3/objects/contacts"
    with _client(server) as client:
        token = _login(server, client)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(url, headers=bearer).status_code == 200
    server.tokens()[0].issued_at -= 3600  # an hour later
    assert httpx.get(url, headers=bearer).status_code == 401
    fresh = _refresh(server, token["refresh_token"]).json()
    bearer = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert httpx.get(url, headers=bearer).status_code == 200
    server.revoke_all_grants("boss@acme.com")
    slack = httpx.post(f"{server.url}/api/chat.postMessage", json={"channel": "C"}, headers=bearer)
    assert slack.json() == {"ok": False, "error": "invalid_auth"}
    assert httpx.get(url, headers=bearer).status_code == 401
    assert len(server.api_calls) == 2
    assert server.errors == []
