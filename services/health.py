"""The daily health check of clients' credentials, and one notice per breakage.

:func:`check_credentials` checks every stored credential of every active client (or of one):

- a **connected account** (an OAuth kind) with a refresh token is refreshed (forced, under the
  credential's refresh lock, :func:`blocks.oauth.refresh_credential`) and the fresh access token
  is shown to the provider's identity endpoint; ``invalid_grant`` or a refused token is
  ``needs_reconnect``. One without a refresh token (Slack bot tokens) gets the identity call
  only: ``expiring`` when its access token ends within :data:`EXPIRING_WITHIN`,
  ``needs_reconnect`` once it has ended;
- a **pasted credential** whose kind has a connection test (:data:`CHECKED_KINDS`) gets that
  test; a failed test is ``failing``. (``http_auth`` needs a probe address it does not store, so
  it is not checked.)

**Transient errors** (the provider unreachable, a timeout, a 429 or 5xx answer) do not change a
credential's status: the status of the previous check is kept and the detail says the check could
not be completed. So a provider's blip never sends an email; a provider that really broke the
connection answers ``invalid_grant`` or refuses the token on a later check.

Results are recorded with :func:`agency.db.record_health` (``checked_at`` now). Then each client
with broken credentials (``failing`` / ``needs_reconnect``) not yet notified for this breakage
(``notified_at`` unset) gets **one** ``credential_broken`` notification
(:func:`services.notifications.notify`: its users and contact addresses, and the agency's staff,
``AGENCY_NOTIFY_AGENCY_EMAILS`` and Slack, minus those who switched the kind off), listing those
credentials, since when, and what to do; then ``notified_at`` is set. A credential still
broken the next day is not notified again; a repaired one clears ``notified_at``
(``record_health``), so a new breakage is.

Checks run in a small thread pool. On PostgreSQL each refresh locks only its own credential's
row; on SQLite (the embedded stack) the refresh lock is the database's write lock, so refreshes
run one at a time there while identity calls and connection tests still run side by side.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from prefect.client.orchestration import get_client
from sqlalchemy import select

from agency.db import Client, CredentialStatus, record_health, session_scope, utcnow
from agency.errors import AgencyError, CredentialInvalid, CredentialMissing, TransientNodeError
from agency.settings import Settings, get_settings
from blocks.client_credential import ClientCredential
from blocks.kinds import OAUTH_KINDS, OAuthCredential
from blocks.names import read_documents_by_type
from blocks.oauth import (
    BUILTIN_PROVIDERS,
    OAUTH_AREA,
    OAuthApp,
    OAuthSession,
    load_app,
    needs_reconnect_message,
    refresh_credential,
)
from services.clients import get_client_record
from services.connection_tests import TESTABLE_KINDS, check_credential
from services.notifications.delivery import Incident, notify
from services.notifier import NoticeFailed
from services.scoping import client_session

logger = logging.getLogger("agency.health")

#: an access token that cannot be renewed and ends within this is ``expiring``
EXPIRING_WITHIN = timedelta(days=3)
#: pasted kinds the check tests (``http_auth`` needs a probe address it does not store)
CHECKED_KINDS: tuple[str, ...] = tuple(k for k in TESTABLE_KINDS if k != "http_auth")
BROKEN = ("needs_reconnect", "failing")
WORKERS = 8
_DETAIL_MAX = 500
_KIND_TITLES = {
    "smtp": "SMTP",
    "openai": "OpenAI",
    "postgres": "PostgreSQL",
    "s3": "S3",
    "http_auth": "HTTP",
    "slack_webhook": "Slack webhook",
    "webhook_signing": "webhook signing",
}


@dataclass(frozen=True)
class CredentialHealth:
    """The check of one credential: its status afterwards and a plain-words detail."""

    client: str
    kind: str
    name: str
    status: str
    detail: str | None
    seconds: float
    #: the check could not be completed (provider unreachable, 5xx): the status is the previous
    transient: bool = False


@dataclass
class HealthReport:
    """Every credential checked, the notices sent and the time it all took."""

    results: list[CredentialHealth] = field(default_factory=list)
    seconds: float = 0.0
    notified: list[str] = field(default_factory=list)
    notice_errors: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[CredentialHealth]:
        """The credentials that are broken after this check."""
        return [r for r in self.results if r.status in BROKEN]

    def summary(self) -> dict[str, object]:
        """Counts by status, for a flow's result and logs (no detail, no secret)."""
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {
            "checked": len(self.results),
            "statuses": counts,
            "transient": sum(r.transient for r in self.results),
            "notified_clients": len(self.notified),
            "notice_errors": len(self.notice_errors),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Outcome:
    status: str
    detail: str
    transient: bool = False
    fields: dict[str, object] = field(default_factory=dict)


def _title(provider: str | None, kind: str) -> str:
    if provider and provider in BUILTIN_PROVIDERS:
        return BUILTIN_PROVIDERS[provider].title
    if provider:
        return provider.replace("-", " ").title()
    return _KIND_TITLES.get(kind, kind)


# --- one credential -----------------------------------------------------------------------


class _Apps:
    """The agency's OAuth apps, read once per check run and store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apps: dict[tuple[str, str | None, str], OAuthApp] = {}

    def get(self, block: ClientCredential, provider: str) -> OAuthApp:
        key = (block.store, block.vault_connection, provider)
        with self._lock:
            app = self._apps.get(key)
        if app is None:
            app = load_app(block.secret_store(area=OAUTH_AREA), provider)
            with self._lock:
                self._apps[key] = app
        return app


def _transient(message: str) -> _Outcome:
    return _Outcome("", f"{message} The check will be tried again.", transient=True)


def _identity(app: OAuthApp, name: str, access_token: str) -> str:
    with OAuthSession(app) as oauth:
        try:
            return oauth.identity(access_token)
        except CredentialInvalid:
            raise _Reconnect(needs_reconnect_message(app.provider.title, name)) from None


class _Reconnect(Exception):
    """The connection must be made again; the message says so in plain words."""


def _check_oauth(
    block: ClientCredential, apps: _Apps, refresh_lock: threading.Lock | None
) -> _Outcome:
    credential = block.resolve()
    if not isinstance(credential, OAuthCredential):
        return _Outcome("failing", f"Credential '{block.name}' is not a connected account.")
    app = apps.get(block, credential.provider)
    title = app.provider.title
    try:
        if credential.refresh_token is not None:
            if refresh_lock is not None:
                with refresh_lock:
                    credential = refresh_credential(block, force=True)
            else:
                credential = refresh_credential(block, force=True)
        elif credential.expires_within(0):
            return _Outcome(
                "needs_reconnect",
                f"Your {title} connection '{block.name}' has expired and cannot be renewed. "
                "Reconnect it under Credentials.",
            )
        account = _identity(app, block.name, credential.access_token.get_secret_value())
    except _Reconnect as exc:
        return _Outcome("needs_reconnect", str(exc))
    except CredentialInvalid as exc:
        if str(exc) == needs_reconnect_message(title, block.name):  # invalid_grant, recorded
            return _Outcome("needs_reconnect", str(exc))
        return _Outcome("failing", str(exc))
    except TransientNodeError as exc:
        return _transient(str(exc))
    except httpx.HTTPError as exc:
        return _transient(f"{title} could not be reached ({type(exc).__name__}).")
    who = f" as {account}" if account else ""
    fields: dict[str, object] = {"account": account} if account else {}
    if credential.refresh_token is None and credential.expires_within(
        EXPIRING_WITHIN.total_seconds()
    ):
        assert credential.expires_at is not None
        ends = datetime.fromtimestamp(credential.expires_at, UTC).strftime("%Y-%m-%d")
        return _Outcome(
            "expiring",
            f"Connected{who}, but the {title} connection '{block.name}' cannot be renewed and "
            f"ends on {ends}. Reconnect it under Credentials before then.",
            fields=fields,
        )
    return _Outcome("connected", f"Connected{who}.", fields=fields)


def _check_pasted(block: ClientCredential) -> _Outcome:
    result = check_credential(block.resolve())
    return _Outcome("connected" if result.ok else "failing", result.message)


def _check_one(
    block: ClientCredential, apps: _Apps, refresh_lock: threading.Lock | None
) -> tuple[_Outcome, float]:
    started = time.perf_counter()
    try:
        if block.kind in OAUTH_KINDS:
            outcome = _check_oauth(block, apps, refresh_lock)
        else:
            outcome = _check_pasted(block)
    except CredentialMissing:
        outcome = _Outcome(
            "failing",
            f"The stored values of '{block.name}' are missing or incomplete. "
            "Enter them again under Credentials.",
        )
    except AgencyError as exc:  # messages of the platform's errors are safe to show
        outcome = _Outcome("failing", str(exc))
    except Exception as exc:  # a check must never stop the others; no exception text is shown
        logger.exception("health check of %s/%s/%s failed", block.client, block.kind, block.name)
        outcome = _Outcome("failing", f"The check failed unexpectedly ({type(exc).__name__}).")
    return outcome, time.perf_counter() - started


# --- the run ------------------------------------------------------------------------------


def _clients(settings: Settings, client: str | None) -> dict[str, int]:
    with session_scope(settings.platform_database_url) as session:
        if client is not None:
            return {client: get_client_record(session, client).id}
        rows = session.execute(select(Client.slug, Client.id).where(Client.status == "active"))
        return {slug: cid for slug, cid in rows}


def _stored(clients: Iterable[str]) -> list[ClientCredential]:
    wanted = set(clients)
    with get_client(sync_client=True) as api:
        documents = read_documents_by_type(api, ClientCredential.get_block_type_slug())
    found = [ClientCredential.model_validate(doc.data) for doc in documents]
    checked = (b for b in found if b.client in wanted)
    return sorted(
        (b for b in checked if b.kind in OAUTH_KINDS or b.kind in CHECKED_KINDS),
        key=lambda b: (b.client, b.kind, b.name),
    )


def _previous(settings: Settings, client_ids: dict[str, int]) -> dict[tuple[str, str, str], str]:
    slugs = {cid: slug for slug, cid in client_ids.items()}
    with session_scope(settings.platform_database_url) as session:
        rows = session.execute(
            select(
                CredentialStatus.client_id,
                CredentialStatus.kind,
                CredentialStatus.name,
                CredentialStatus.status,
            ).where(CredentialStatus.client_id.in_(slugs))
        )
        return {(slugs[cid], kind, name): status for cid, kind, name, status in rows}


def check_credentials(
    settings: Settings,
    client: str | None = None,
    *,
    workers: int = WORKERS,
    on_result: Callable[[CredentialHealth], None] | None = None,
) -> HealthReport:
    """Check the credentials of every active client (or of ``client``), record their health and
    notify each new breakage once (see the module docstring)."""
    started = time.perf_counter()
    client_ids = _clients(settings, client)
    stored = _stored(client_ids)
    previous = _previous(settings, client_ids)
    apps = _Apps()
    sqlite = get_settings().platform_database_url.startswith("sqlite")
    refresh_lock = threading.Lock() if sqlite else None
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="health") as pool:
        outcomes = list(pool.map(lambda b: _check_one(b, apps, refresh_lock), stored))
    report = HealthReport()
    for block, (outcome, seconds) in zip(stored, outcomes, strict=True):
        result = _record(settings, block, outcome, seconds, previous)
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    present: dict[str, set[tuple[str, str]]] = {}
    for block in stored:
        present.setdefault(block.client, set()).add((block.kind, block.name))
    for slug in sorted(present):
        _notify(settings, slug, present[slug], report)
    report.seconds = time.perf_counter() - started
    logger.info("credential health check: %s", report.summary())
    return report


def _record(
    settings: Settings,
    block: ClientCredential,
    outcome: _Outcome,
    seconds: float,
    previous: dict[tuple[str, str, str], str],
) -> CredentialHealth:
    key = (block.client, block.kind, block.name)
    detail = outcome.detail[:_DETAIL_MAX]
    status = outcome.status
    with client_session(settings, block.client) as session:
        if outcome.transient:
            status = previous.get(key, "unchecked")
            if status != "unchecked":
                row = record_health(session, *key, status, checked_at=utcnow())
                if row is not None and status not in BROKEN:  # keep the reason of a breakage
                    row.detail = detail
        else:
            record_health(
                session, *key, status, detail=detail, checked_at=utcnow(), **outcome.fields
            )
    return CredentialHealth(*key, status, detail, seconds, outcome.transient)


# --- notices ------------------------------------------------------------------------------


def _what_to_do(row: CredentialStatus) -> str:
    title = _title(row.provider, row.kind)
    if row.kind in OAUTH_KINDS:
        if row.status == "needs_reconnect":
            return f"Reconnect your {title} account under Credentials in the portal."
        return (
            f"Nothing to do on your side yet: the agency's {title} set-up has to be fixed and "
            "your agency has been told. If it persists, reconnecting under Credentials may help."
        )
    return (
        f"Check the {title} credential '{row.name}' (server, login, password or key may have "
        "changed) and update it under Credentials in the portal."
    )


def _describe(row: CredentialStatus, *, agency: bool = False) -> str:
    title = _title(row.provider, row.kind)
    what = f"{title} account" if row.kind in OAUTH_KINDS else f"{title} credential"
    account = f" ({row.account})" if row.account else ""
    since = row.failing_since or utcnow()
    label = "Asked of the client" if agency else "What to do"
    return (
        f"- {what} '{row.name}'{account}: not working since {since:%Y-%m-%d %H:%M} UTC.\n"
        f"  {row.detail or ''}\n"
        f"  {label}: {_what_to_do(row)}"
    )


def _notify(
    settings: Settings, slug: str, present: set[tuple[str, str]], report: HealthReport
) -> None:
    with session_scope(settings.platform_database_url) as session:
        record = get_client_record(session, slug)
        rows = [
            r
            for r in session.scalars(
                select(CredentialStatus).where(
                    CredentialStatus.client_id == record.id,
                    CredentialStatus.status.in_(BROKEN),
                    CredentialStatus.notified_at.is_(None),
                )
            )
            if (r.kind, r.name) in present
        ]
        if not rows:
            return
        name = record.name
        rows.sort(key=lambda r: (r.kind, r.name))
        listed = "\n\n".join(_describe(r) for r in rows)
        for_agency = "\n\n".join(_describe(r, agency=True) for r in rows)
        refs = [f"{r.kind}/{r.name}" for r in rows]
        # one incident per breakage: a repaired and again broken credential has a new start
        subject = (
            slug
            + ":"
            + ",".join(
                f"{r.kind}/{r.name}@{(r.failing_since or utcnow()):%Y%m%dT%H%M%S}" for r in rows
            )
        )
    portal = settings.portal_base_url
    count = "A connection" if len(rows) == 1 else f"{len(rows)} connections"
    incident = Incident(
        kind="credential_broken",
        subject=subject,
        client=slug,
        client_title=f"Action needed: {count.lower()} your workflows use stopped working",
        client_body=f"Hello,\n\n{count} that your workflows use stopped working:\n\n{listed}\n\n"
        f"Portal: {portal}\n\nWorkflows that use it fail until it is fixed. This email is sent "
        "once per breakage.\n",
        agency_title=f"[{slug}] {', '.join(refs)} broken for client {name}",
        agency_body=f"Client {name} ({slug}) has {len(rows)} broken credential(s):\n\n"
        f"{for_agency}\n\nThe client's people were emailed too. "
        f"See: agency connections list --client {slug}\n",
    )
    try:  # through the notifications machinery: preferences, one message per incident, digest
        notify(settings, incident)
    except NoticeFailed as exc:
        logger.warning("credential notice for %s not sent: %s", slug, exc)
        report.notice_errors.append(str(exc))
        return
    ids = [r.id for r in rows]
    with client_session(settings, slug) as session:
        for row in session.scalars(select(CredentialStatus).where(CredentialStatus.id.in_(ids))):
            row.notified_at = utcnow()
    report.notified.append(slug)


__all__ = ["CHECKED_KINDS", "CredentialHealth", "HealthReport", "check_credentials"]
