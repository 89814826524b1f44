"""Connected accounts (OAuth2): the agency's apps, the connect flow, listing and revoking.

The connect flow, as the three doors see it:

1. the portal (or ``agency connections connect-url``) calls :func:`start_connect`: a connect
   attempt (an ``oauth_states`` row) bound to the user, client, provider and credential name,
   expiring in ten minutes; the user gets the gateway's ``/oauth/start?state=...`` link;
2. the gateway's ``/oauth/start`` calls :func:`begin_authorization`: the attempt is bound to the
   browser that opened it (a cookie whose digest is stored; a second opening is refused), and the
   browser goes to the provider's consent page with PKCE;
3. the provider sends the browser to the gateway's ``/oauth/callback``, which calls
   :func:`complete_connect`: the state must be known, unused, unexpired and opened by this
   browser; it is used up first, then the code is exchanged, the identity read and the tokens
   stored as the client's credential. Any failure stores nothing and ends in one plain sentence.

The portal polls :func:`attempt_outcome` to show that sentence where the user started.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

import blocks
from agency.db import (
    Client,
    CredentialStatus,
    OAuthState,
    forget_health,
    record_health,
    session_scope,
    utcnow,
)
from agency.errors import AgencyError, CredentialMissing, InputInvalid, NotFound
from agency.redaction import register_secret
from agency.settings import Settings
from blocks.kinds import OAUTH_KINDS
from blocks.names import check_slug
from blocks.oauth import (
    BUILTIN_PROVIDERS,
    OAUTH_AREA,
    OAuth2Error,
    OAuthApp,
    OAuthSession,
    delete_app,
    list_apps,
    load_app,
    save_app,
    token_fields,
)
from services.audit import audit
from services.auth import Principal, require_agency, scope_client
from services.clients import get_client_record
from services.scoping import client_session

STATE_TTL = timedelta(minutes=10)
CALLBACK_PATH = "/oauth/callback"
START_PATH = "/oauth/start"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _app_store(settings: Settings) -> blocks.SecretStore:
    return blocks.get_secret_store(settings, area=OAUTH_AREA)


def redirect_uri(settings: Settings) -> str:
    """The callback every provider app must allow: ``<gateway>/oauth/callback``."""
    return f"{settings.gateway_url}{CALLBACK_PATH}"


# --- the agency's apps -------------------------------------------------------------------


@dataclass(frozen=True)
class AppView:
    """A registered provider app as faces show it (the client secret never comes back)."""

    slug: str
    title: str
    kind: str
    client_id: str
    scopes: str


def _view(app: OAuthApp) -> AppView:
    return AppView(app.slug, app.provider.title, app.kind, app.client_id, app.provider.scope_for())


def register_app(
    settings: Settings,
    principal: Principal | None,
    slug: str,
    client_id: str,
    client_secret: str,
    overrides: dict[str, Any] | None = None,
    *,
    actor: str = "cli",
) -> AppView:
    """Register (or replace) the agency's app for provider ``slug``; agency staff only."""
    if principal is not None:
        require_agency(principal)
        actor = principal.email
    app = save_app(_app_store(settings), slug, client_id, client_secret, overrides)
    with session_scope(settings.platform_database_url) as session:
        audit(session, actor=actor, action="oauth_app.set", target=slug, detail={})
    return _view(app)


def apps(settings: Settings) -> list[AppView]:
    """Every registered provider app (what clients can connect to)."""
    return [_view(a) for a in list_apps(_app_store(settings))]


def remove_app(
    settings: Settings, principal: Principal | None, slug: str, *, actor: str = "cli"
) -> None:
    """Forget the agency's app for ``slug``; connections made with it stop refreshing."""
    if principal is not None:
        require_agency(principal)
        actor = principal.email
    delete_app(_app_store(settings), slug)
    with session_scope(settings.platform_database_url) as session:
        audit(session, actor=actor, action="oauth_app.delete", target=slug, detail={})


# --- the connect flow --------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectAttempt:
    """A started connect attempt: its id (for :func:`attempt_outcome`) and the link to open."""

    id: int
    url: str
    provider: str
    kind: str
    name: str


@dataclass(frozen=True)
class Outcome:
    """How a connect attempt ended (``done`` False while the user is still at the provider)."""

    done: bool
    ok: bool
    message: str


def start_connect(
    settings: Settings,
    principal: Principal | None,
    provider: str,
    name: str = "default",
    client: str | None = None,
    *,
    actor: str = "cli",
) -> ConnectAttempt:
    """Create a connect attempt for ``client``'s account at ``provider``, named ``name``.

    ``principal`` None is the CLI acting for the agency (``client`` required).
    """
    slug = scope_client(principal, client) if principal is not None else client
    if not slug:
        raise InputInvalid("Choose a client first.")
    check_slug(name, "connection name")
    app = load_app(_app_store(settings), provider)
    state = secrets.token_urlsafe(32)
    with client_session(settings, slug) as session:
        record = get_client_record(session, slug)
        row = OAuthState(
            state_hash=_digest(state),
            client_id=record.id,
            user_id=principal.user_id if principal is not None else None,
            kind=app.kind,
            name=name,
            provider=app.slug,
            code_verifier=secrets.token_urlsafe(48) if app.provider.pkce else None,
        )
        session.add(row)
        session.flush()
        audit(
            session,
            actor=principal.email if principal is not None else actor,
            action="connection.start",
            target=f"{app.kind}/{name}",
            client_id=record.id,
            detail={"provider": app.slug},
        )
        attempt_id = row.id
    url = f"{settings.gateway_url}{START_PATH}?state={state}"
    return ConnectAttempt(attempt_id, url, app.slug, app.kind, name)


class ConnectRefused(AgencyError):
    """A connect link or callback that cannot go on; the message is for the person."""


def _attempt(session: Any, state: str) -> OAuthState:
    row = session.scalar(select(OAuthState).where(OAuthState.state_hash == _digest(state or "")))
    if row is None:
        raise ConnectRefused("This connect link is not valid. Start again from the portal.")
    if row.used_at is not None:
        raise ConnectRefused("This connect link was already used. Start again from the portal.")
    if utcnow() - row.created_at > STATE_TTL:
        raise ConnectRefused(
            "This connect link has expired (links last 10 minutes). Start again from the portal."
        )
    return row


def begin_authorization(settings: Settings, state: str, browser: str) -> str:
    """Bind the attempt to this browser (the digest of its cookie ``browser``); return the
    provider's consent URL. A link opened a second time is refused."""
    with session_scope(settings.platform_database_url) as session:
        row = _attempt(session, state)
        if row.started_at is not None:
            raise ConnectRefused(
                "This connect link was already opened. Start again from the portal."
            )
        row.started_at, row.browser_hash = utcnow(), _digest(browser)
        provider, verifier = row.provider, row.code_verifier
    app = load_app(_app_store(settings), provider)
    with OAuthSession(
        app, redirect_uri=redirect_uri(settings), scope=app.provider.scope_for()
    ) as oauth:
        return oauth.authorization_url(state, verifier)


def _finish(settings: Settings, attempt_id: int, ok: bool, message: str) -> Outcome:
    with session_scope(settings.platform_database_url) as session:
        row = session.get(OAuthState, attempt_id)
        if row is not None:
            row.outcome_ok, row.outcome = ok, message[:500]
            row.code_verifier = None
    return Outcome(True, ok, message)


def complete_connect(
    settings: Settings,
    state: str,
    browser: str | None,
    *,
    code: str | None = None,
    error: str | None = None,
) -> Outcome:
    """Finish a connect attempt from the provider's redirect (see the module docstring)."""
    with session_scope(settings.platform_database_url) as session:
        row = _attempt(session, state)
        if row.browser_hash is None or browser is None or row.browser_hash != _digest(browser):
            raise ConnectRefused(
                "This connect link was started in another browser or by another user. "
                "Start again from the portal, in this browser."
            )
        row.used_at = utcnow()  # single use, before anything else can go wrong
        attempt_id, client_id, kind, name, provider = (
            row.id,
            row.client_id,
            row.kind,
            row.name,
            row.provider,
        )
        verifier, user_id = row.code_verifier, row.user_id
        client = session.scalar(select(Client.slug).where(Client.id == client_id))
    app = load_app(_app_store(settings), provider)
    title = app.provider.title
    if error or not code:
        why = "you declined access" if error == "access_denied" else f"{title} answered {error}"
        return _finish(
            settings, attempt_id, False, f"{title} was not connected: {why}. Nothing was stored."
        )
    try:
        with OAuthSession(app, redirect_uri=redirect_uri(settings)) as oauth:
            token = oauth.exchange(code, verifier)
            register_secret(token.get("access_token"), token.get("refresh_token"))
            account = oauth.identity(token["access_token"])
    except OAuth2Error as exc:
        return _finish(
            settings,
            attempt_id,
            False,
            f"{title} refused the connection ({exc.error}). Nothing was stored; please try again.",
        )
    except (httpx.HTTPError, AgencyError, KeyError) as exc:
        return _finish(
            settings,
            attempt_id,
            False,
            f"{title} could not complete the connection "
            f"({type(exc).__name__}). Nothing was stored; please try again.",
        )
    fields = token_fields(token)
    data = {"provider": app.slug, "account": account, **fields}
    assert client is not None
    blocks.save_credential(client, kind, name, data, settings=settings)
    with client_session(settings, client) as session:
        record_health(
            session,
            client,
            kind,
            name,
            "connected",
            provider=app.slug,
            account=account or None,
            scopes=fields["scope"][:2000] or None,
            connected_at=utcnow(),
            refreshed_at=utcnow(),
            detail=None,
        )
        audit(
            session,
            actor=f"user:{user_id}" if user_id else "cli",
            action="connection.connected",
            target=f"{kind}/{name}",
            client_id=client_id,
            detail={"provider": app.slug, "account": account},
        )
    who = f" as {account}" if account else ""
    return _finish(settings, attempt_id, True, f"{title} connected{who}.")


def attempt_outcome(settings: Settings, principal: Principal, attempt_id: int) -> Outcome:
    """How the principal's connect attempt ended, or ``done=False`` while it is under way."""
    slug = scope_client(principal, None) if not principal.is_agency else None
    with session_scope(settings.platform_database_url) as session:
        row = session.get(OAuthState, attempt_id)
        mine = row is not None and (
            row.user_id == principal.user_id
            or (slug is not None and row.client_id == get_client_record(session, slug).id)
        )
        if row is None or not mine:
            raise NotFound("No such connect attempt.")
        if row.outcome is None:
            if row.started_at is not None and utcnow() - row.created_at > STATE_TTL:
                return Outcome(True, False, "The connect link expired. Press Connect again.")
            return Outcome(False, False, "Waiting for you to approve at the provider…")
        return Outcome(True, bool(row.outcome_ok), row.outcome)


# --- connections as clients see them --------------------------------------------------------


@dataclass(frozen=True)
class ConnectionView:
    """One connected account or checked credential: identity and health, never a token."""

    kind: str
    name: str
    provider: str | None
    account: str | None
    status: str
    detail: str | None
    failing_since: datetime | None
    checked_at: datetime | None


def list_connections(
    settings: Settings, principal: Principal | None, client: str | None = None
) -> list[ConnectionView]:
    """Health rows of the client's credentials (connected accounts first)."""
    slug = scope_client(principal, client) if principal is not None else client
    if not slug:
        raise InputInvalid("Choose a client first.")
    with client_session(settings, slug) as session:
        record = get_client_record(session, slug)
        rows = session.scalars(
            select(CredentialStatus).where(CredentialStatus.client_id == record.id)
        ).all()
        views = [
            ConnectionView(
                r.kind,
                r.name,
                r.provider,
                r.account,
                r.status,
                r.detail,
                r.failing_since,
                r.checked_at,
            )
            for r in rows
        ]
    return sorted(views, key=lambda v: (v.kind not in OAUTH_KINDS, v.kind, v.name))


def revoke_connection(
    settings: Settings,
    principal: Principal | None,
    kind: str,
    name: str,
    client: str | None = None,
    *,
    actor: str = "cli",
) -> bool:
    """Revoke a connected account at its provider (when it can) and delete its tokens.

    Returns whether the provider confirmed the revocation. The tokens are deleted either way.
    """
    slug = scope_client(principal, client) if principal is not None else client
    if not slug:
        raise InputInvalid("Choose a client first.")
    if kind not in OAUTH_KINDS:
        raise InputInvalid(f"'{kind}' is not a connected account; delete it instead.")
    credential = blocks.load_credential(slug, kind, name)
    revoked = False
    try:
        app = load_app(_app_store(settings), credential.provider)  # type: ignore[attr-defined]
        token = credential.refresh_token or credential.access_token  # type: ignore[attr-defined]
        hint = "refresh_token" if credential.refresh_token else "access_token"  # type: ignore[attr-defined]
        with OAuthSession(app) as oauth:
            revoked = oauth.revoke(token.get_secret_value(), hint)
    except (httpx.HTTPError, NotFound, OAuth2Error):
        revoked = False  # the provider could not be told; the tokens still go
    try:
        blocks.delete_credential(slug, kind, name)
    except CredentialMissing:
        pass
    with client_session(settings, slug) as session:
        record = get_client_record(session, slug)
        forget_health(session, record.id, kind, name)
        audit(
            session,
            actor=principal.email if principal is not None else actor,
            action="connection.revoke",
            target=f"{kind}/{name}",
            client_id=record.id,
            detail={"revoked_at_provider": revoked},
        )
    return revoked


def provider_titles() -> dict[str, str]:
    """Titles of the built-in providers by slug (generic ones use their registered title)."""
    return {slug: p.title for slug, p in BUILTIN_PROVIDERS.items()}
