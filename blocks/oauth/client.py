"""Authlib's OAuth2 client over the platform's egress-guarded httpx: code exchange with PKCE,
refresh, revocation and the provider's identity call.

Authlib's own httpx integration is built on ``httpx2``; this subclass of its framework-free
``OAuth2Client`` keeps the protocol (authorization URL, PKCE, token requests, client
authentication, error parsing) and sends every request through :func:`guarded_client`, so a
provider URL an engineer typed is checked like any other address.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client

from agency.egress import guarded_client
from agency.errors import CredentialInvalid, TransientNodeError
from blocks.oauth.apps import OAuthApp

__all__ = ["OAuth2Error", "OAuthSession", "generate_token"]


class _HttpxClientAuth(httpx.Auth, ClientAuth):
    """Authlib's client authentication (basic or post) as an httpx auth flow."""

    requires_request_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url, headers, body = self.prepare(
            request.method, str(request.url), request.headers, request.content
        )
        headers["Content-Length"] = str(len(body))
        yield httpx.Request(
            request.method, url, headers=headers, content=body, extensions=request.extensions
        )


class OAuthSession(OAuth2Client):  # type: ignore[misc]
    """One conversation with a provider on behalf of the agency's app."""

    client_auth_class = _HttpxClientAuth

    def __init__(
        self,
        app: OAuthApp,
        *,
        redirect_uri: str | None = None,
        scope: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.app = app
        self.http = guarded_client(timeout=timeout)
        super().__init__(
            session=self.http,
            client_id=app.client_id,
            client_secret=app.client_secret.get_secret_value(),
            token_endpoint_auth_method=app.provider.token_auth_method,
            revocation_endpoint_auth_method=app.provider.token_auth_method,
            scope=scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256" if app.provider.pkce else None,
            token_endpoint=app.provider.token_url,
        )

    def __enter__(self) -> OAuthSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def authorization_url(self, state: str, code_verifier: str | None) -> str:
        """The provider's consent page for this app, state and (PKCE) verifier."""
        url, _ = self.create_authorization_url(
            self.app.provider.authorize_url,
            state=state,
            code_verifier=code_verifier if self.app.provider.pkce else None,
            **self.app.provider.authorize_params,
        )
        return str(url)

    def exchange(self, code: str, code_verifier: str | None) -> dict[str, Any]:
        """Trade an authorization code for tokens (``OAuth2Error`` when the provider refuses)."""
        extra = {"code_verifier": code_verifier} if self.app.provider.pkce else {}
        return dict(self.fetch_token(self.app.provider.token_url, code=code, **extra))

    def refreshed(self, refresh_token: str) -> dict[str, Any]:
        """New tokens for ``refresh_token`` (``OAuth2Error`` ``invalid_grant`` when revoked)."""
        return dict(self.refresh_token(self.app.provider.token_url, refresh_token=refresh_token))

    def revoke(self, token: str, hint: str) -> bool:
        """Revoke ``token`` at the provider; False when it has no revocation endpoint."""
        if not self.app.provider.revoke_url:
            return False
        answer = self.revoke_token(self.app.provider.revoke_url, token=token, token_type_hint=hint)
        return bool(answer.status_code < 400)

    def identity(self, access_token: str) -> str:
        """The connected account's name from the provider's identity endpoint ('' if none)."""
        url = self.app.provider.userinfo_url
        if not url:
            return ""
        answer = self.http.get(
            url.replace("{access_token}", access_token),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        if answer.status_code == 401:
            raise CredentialInvalid(f"{self.app.provider.title} refused the connection's token.")
        if answer.status_code >= 400:
            raise TransientNodeError(
                f"{self.app.provider.title} answered {answer.status_code} to the identity check."
            )
        body = answer.json()
        if isinstance(body, dict) and body.get("ok") is False:  # Slack's way of saying 401
            raise CredentialInvalid(f"{self.app.provider.title} refused the connection's token.")
        return self.app.provider.identity(body if isinstance(body, dict) else {})
