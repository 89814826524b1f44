"""A valid access token at run time: refresh shortly before expiry, once per credential.

``oauth_credential`` returns the client's connected account with an access token valid for at
least ``LEEWAY_SECONDS``. When it must refresh, it takes the credential's health row as a lock
(:func:`agency.db.lock_health_row`, any process, any backend), re-reads the tokens — another run
may have refreshed them meanwhile — and only then asks the provider. A provider that rotates
refresh tokens therefore never sees one twice. ``invalid_grant`` marks the credential *needs
reconnect* and raises ``CredentialInvalid`` in plain words.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import SecretStr

from agency.db import lock_health_row, record_health, session_scope, utcnow
from agency.errors import CredentialInvalid, CredentialMissing, TransientNodeError
from agency.redaction import register_secret
from agency.settings import get_settings
from blocks.client_credential import ClientCredential
from blocks.kinds import OAUTH_KINDS, OAuthCredential
from blocks.oauth.apps import OAUTH_AREA, OAuthApp, load_app
from blocks.oauth.client import OAuth2Error, OAuthSession
from blocks.registry import credential_block

LEEWAY_SECONDS = 60.0


def needs_reconnect_message(title: str, name: str) -> str:
    """What a client reads when a connection has to be made again."""
    return (
        f"Your {title} connection '{name}' is no longer authorised (it was revoked or expired). "
        "Reconnect it under Credentials."
    )


def token_fields(token: dict[str, Any], previous: OAuthCredential | None = None) -> dict[str, Any]:
    """Credential fields from a token endpoint answer (a refresh may omit the refresh token)."""
    expires_at = token.get("expires_at")
    if expires_at is None and token.get("expires_in") not in (None, ""):
        expires_at = time.time() + float(token["expires_in"])
    refresh = token.get("refresh_token") or (
        previous.refresh_token.get_secret_value() if previous and previous.refresh_token else None
    )
    register_secret(token.get("access_token"), refresh)
    return {
        "access_token": token["access_token"],
        "refresh_token": refresh,
        "expires_at": float(expires_at) if expires_at is not None else None,
        "scope": str(token.get("scope") or (previous.scope if previous else "")),
    }


def _current(block: ClientCredential) -> OAuthCredential:
    credential = block.resolve()
    if not isinstance(credential, OAuthCredential):
        raise CredentialInvalid(f"Credential '{block.name}' is not a connected account.")
    return credential


def oauth_credential(
    client: str, kind: str, name: str, *, leeway: float = LEEWAY_SECONDS
) -> OAuthCredential:
    """The client's connected account ``kind``/``name`` with a fresh access token."""
    if kind not in OAUTH_KINDS:
        raise CredentialInvalid(f"'{kind}' is not a kind of connected account.")
    block = credential_block(client, kind, name)
    credential = _current(block)
    if not credential.expires_within(leeway):
        return credential
    return refresh_credential(block, leeway=leeway)


def refresh_credential(
    block: ClientCredential, *, leeway: float = LEEWAY_SECONDS, force: bool = False
) -> OAuthCredential:
    """Refresh ``block``'s tokens under the credential's lock (see the module docstring)."""
    client, kind, name = block.client, block.kind, block.name
    broken: str | None = None
    with session_scope(get_settings().platform_database_url) as session:
        try:
            lock_health_row(session, client, kind, name)
        except LookupError:
            raise CredentialMissing(client, kind, name) from None
        credential = _current(block)  # another process may have refreshed it while we waited
        if not force and not credential.expires_within(leeway):
            return credential
        app = load_app(block.secret_store(area=OAUTH_AREA), credential.provider)
        title = app.provider.title
        if credential.refresh_token is None:
            broken = needs_reconnect_message(title, name)
        else:
            try:
                token = _refresh(app, credential.refresh_token)
            except _Revoked:
                broken = needs_reconnect_message(title, name)
            else:
                fresh = credential.model_copy(
                    update=_secret_fields(token_fields(token, credential))
                )
                block.secret_store().write(client, kind, name, fresh.to_store())
                record_health(
                    session, client, kind, name, "connected", detail=None, refreshed_at=utcnow()
                )
                return fresh
        record_health(session, client, kind, name, "needs_reconnect", detail=broken)
    raise CredentialInvalid(broken)


class _Revoked(Exception):
    """The provider answered ``invalid_grant``: the grant is gone."""


def _refresh(app: OAuthApp, refresh_token: SecretStr) -> dict[str, Any]:
    title = app.provider.title
    try:
        with OAuthSession(app) as oauth:
            return oauth.refreshed(refresh_token.get_secret_value())
    except OAuth2Error as exc:
        if exc.error == "invalid_grant":
            raise _Revoked from None
        raise CredentialInvalid(
            f"{title} refused to renew the connection ({exc.error}). The agency's {title} app "
            "may be misconfigured; please tell your agency."
        ) from None
    except httpx.HTTPStatusError as exc:
        raise TransientNodeError(
            f"{title} answered {exc.response.status_code} when renewing the connection."
        ) from None
    except httpx.HTTPError as exc:
        raise TransientNodeError(
            f"{title} could not be reached to renew the connection ({type(exc).__name__})."
        ) from None


def _secret_fields(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    out["access_token"] = SecretStr(fields["access_token"])
    if fields.get("refresh_token"):
        out["refresh_token"] = SecretStr(fields["refresh_token"])
    return out
