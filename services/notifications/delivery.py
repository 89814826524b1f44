"""Incidents and their delivery: at most one message per incident and person, and a digest.

An incident (:class:`Incident`) is recorded once per kind and subject
(``notification_incidents``); detecting it again changes nothing. Delivering it emails, through
the platform's notice relay (:mod:`services.notifier`):

- the **client's side**: the client's users who have not switched the kind off, and the client's
  contact addresses that are not a user's, in one message with the client's wording;
- the **agency's side**: agency staff who have not switched the kind off and
  ``AGENCY_NOTIFY_AGENCY_EMAILS``, in one message naming the client; and, when
  ``AGENCY_NOTIFY_AGENCY_SLACK_WEBHOOK_URL`` is set, one Slack message (``POST`` of
  ``{"text": ...}`` to the incoming webhook through the egress-guarded client, expecting 2xx).

Each person's copy is a ``notification_messages`` row written after the relay took it, so a
delivery retried after a relay failure reaches only those who did not get it. A person who already
got ``AGENCY_NOTIFY_DIGEST_AFTER`` (5) messages on their own within the last hour gets the rest
*queued*; once the hour of their oldest of those is over, :func:`send_digests` sends the queued
ones as one digest message.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agency.db import Client, User, session_scope, utcnow
from agency.db.models import NotificationIncident, NotificationMessage, NotificationPreference
from agency.egress import guarded_client
from agency.errors import NotFound
from agency.settings import Settings
from services.notifications.kinds import KINDS
from services.notifier import Notice, NoticeFailed, send_notice
from services.scoping import client_session

logger = logging.getLogger("agency.notifications")
HOUR = timedelta(hours=1)
SLACK_TIMEOUT = 10.0
#: how long a delivery in progress holds its incident (then a crashed pass's hold lapses)
CLAIM_FOR = timedelta(minutes=2)
_BODY_MAX = 4000
_TITLE_MAX = 300


@dataclass(frozen=True)
class Incident:
    """Something to tell a client's people and the agency about, once.

    ``subject`` names it within its ``kind`` (a flow run id, an activation and a scheduled time,
    a credential breakage); the titles and bodies are the client's and the agency's wording.
    """

    kind: str
    subject: str
    client: str
    client_title: str
    client_body: str
    agency_title: str
    agency_body: str


@dataclass
class DeliveryReport:
    """What one delivery pass did: incidents delivered, messages sent, queued, digests sent."""

    delivered: int = 0
    sent: int = 0
    queued: int = 0
    digests: int = 0
    errors: list[str] = field(default_factory=list)


def _subject_key(subject: str) -> str:
    if len(subject) <= 200:
        return subject
    return subject[:135] + "#" + hashlib.sha256(subject.encode()).hexdigest()


def open_incident(settings: Settings, incident: Incident, *, now: datetime | None = None) -> bool:
    """Record ``incident`` for delivery; False when its kind and subject are known already."""
    if incident.kind not in KINDS:
        raise ValueError(f"unknown notification kind {incident.kind!r}")
    subject = _subject_key(incident.subject)
    try:
        with client_session(settings, incident.client) as session:
            client_id = session.scalar(select(Client.id).where(Client.slug == incident.client))
            if client_id is None:
                raise NotFound(f"Unknown client '{incident.client}'.")
            known = session.scalar(
                select(NotificationIncident.id).where(
                    NotificationIncident.kind == incident.kind,
                    NotificationIncident.subject == subject,
                )
            )
            if known is not None:
                return False
            session.add(
                NotificationIncident(
                    kind=incident.kind,
                    subject=subject,
                    client_id=client_id,
                    opened_at=now or utcnow(),
                    client_title=incident.client_title[:_TITLE_MAX],
                    client_body=incident.client_body[:_BODY_MAX],
                    agency_title=incident.agency_title[:_TITLE_MAX],
                    agency_body=incident.agency_body[:_BODY_MAX],
                    attempts=0,
                )
            )
    except IntegrityError:  # a concurrent pass recorded it first
        return False
    return True


# --- recipients ---------------------------------------------------------------------------


def _switched_off(session: Session, kind: str) -> set[int]:
    return set(
        session.scalars(
            select(NotificationPreference.user_id).where(
                NotificationPreference.kind == kind, NotificationPreference.enabled.is_(False)
            )
        )
    )


def _distinct(addresses: Iterable[str], skip: set[str]) -> list[str]:
    seen, out = set(skip), []
    for address in addresses:
        address = address.strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out


def client_recipients(session: Session, client: Client, kind: str) -> list[str]:
    """The client's users who get ``kind``, then its contact addresses that are no user's."""
    off = _switched_off(session, kind)
    users = list(session.execute(select(User.id, User.email).where(User.client_id == client.id)))
    wanted = [email for uid, email in sorted(users) if uid not in off]
    everyone = {email.lower() for _, email in users}
    contacts = [c for c in client.contact_emails or [] if c.strip().lower() not in everyone]
    return _distinct([*wanted, *contacts], set())


def agency_recipients(
    session: Session, settings: Settings, kind: str, skip: set[str] | None = None
) -> list[str]:
    """Agency staff who get ``kind``, then ``AGENCY_NOTIFY_AGENCY_EMAILS`` (not a staff user)."""
    off = _switched_off(session, kind)
    staff = list(session.execute(select(User.id, User.email).where(User.client_id.is_(None))))
    wanted = [email for uid, email in sorted(staff) if uid not in off]
    everyone = {email.lower() for _, email in staff}
    extra = [a for a in settings.notify_agency_emails if a.strip().lower() not in everyone]
    return _distinct([*wanted, *extra], skip or set())


# --- delivery -----------------------------------------------------------------------------


def _recent(session: Session, addresses: list[str], now: datetime) -> dict[str, list[datetime]]:
    """When each address got a message on its own within the hour before ``now``."""
    rows = session.execute(
        select(NotificationMessage.email, NotificationMessage.at).where(
            NotificationMessage.email.in_([a.lower() for a in addresses]),
            NotificationMessage.status == "sent",
            NotificationMessage.at > now - HOUR,
        )
    )
    recent: dict[str, list[datetime]] = {}
    for email, at in rows:
        recent.setdefault(email, []).append(at)
    return recent


def _post_slack(settings: Settings, text: str) -> None:
    """``POST {"text": ...}`` to the agency's Slack incoming webhook; failures are logged only
    (by type: the webhook URL is a secret)."""
    url = settings.notify_agency_slack_webhook_url
    if url is None:
        return
    try:
        with guarded_client(timeout=SLACK_TIMEOUT) as http:
            response = http.post(url.get_secret_value(), json={"text": text})
        if response.status_code >= 300:
            logger.warning("agency Slack webhook answered %s", response.status_code)
    except (httpx.HTTPError, OSError) as exc:
        logger.warning("agency Slack webhook not reached (%s)", type(exc).__name__)


def _claim(url: str, incident_id: int) -> bool:
    """Hold an undelivered incident for this pass (one atomic UPDATE): False when it is
    delivered or another pass holds it (a hold older than :data:`CLAIM_FOR` is taken over)."""
    held = utcnow()
    with session_scope(url) as session:
        result = session.execute(
            update(NotificationIncident)
            .where(
                NotificationIncident.id == incident_id,
                NotificationIncident.delivered_at.is_(None),
                or_(
                    NotificationIncident.claimed_at.is_(None),
                    NotificationIncident.claimed_at < held - CLAIM_FOR,
                ),
            )
            .values(claimed_at=held)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def deliver_incident(
    settings: Settings, incident_id: int, *, now: datetime | None = None
) -> DeliveryReport:
    """Send one incident to everyone who has not got it yet (or queue it for their digest).

    Raises :class:`NoticeFailed` when the relay refuses; those who got it keep their rows, the
    incident stays undelivered and a later pass sends the rest.
    """
    now = now or utcnow()
    report = DeliveryReport()
    url = settings.platform_database_url
    if not _claim(url, incident_id):
        return report  # delivered, or being delivered by another pass right now
    with session_scope(url) as session:
        incident = session.get(NotificationIncident, incident_id)
        if incident is None or incident.delivered_at is not None:
            return report
        client = session.get(Client, incident.client_id)
        assert client is not None
        done = set(
            session.scalars(
                select(NotificationMessage.email).where(
                    NotificationMessage.incident_id == incident.id
                )
            )
        )
        to_client = client_recipients(session, client, incident.kind)
        to_agency = agency_recipients(
            session, settings, incident.kind, skip={a.lower() for a in to_client}
        )
        recent = _recent(session, to_client + to_agency, now)
        first_time = incident.attempts == 0
        incident.attempts += 1
        sides = [
            (False, [a for a in to_client if a.lower() not in done]),
            (True, [a for a in to_agency if a.lower() not in done]),
        ]
        texts = {
            False: (incident.client_title, incident.client_body),
            True: (incident.agency_title, incident.agency_body),
        }
        kind, subject, client_id, slug = incident.kind, incident.subject, client.id, client.slug
    limit = settings.notify_digest_after
    try:
        for for_agency, addresses in sides:
            now_list = [a for a in addresses if len(recent.get(a.lower(), [])) < limit]
            later = [a for a in addresses if a not in now_list]
            nobody = not (to_agency if for_agency else to_client)
            if now_list or (nobody and first_time):  # nobody at all: logged and audited
                title, body = texts[for_agency]
                send_notice(
                    settings,
                    Notice.of(now_list, title, body),
                    client_id=client_id,
                    target=f"{kind}/{slug}",
                )
            with session_scope(url) as session:
                for address in now_list:
                    session.add(_message(incident_id, client_id, address, for_agency, "sent", now))
                for address in later:
                    due = min(recent[address.lower()]) + HOUR
                    session.add(
                        _message(incident_id, client_id, address, for_agency, "queued", now, due)
                    )
            report.sent += len(now_list)
            report.queued += len(later)
    except NoticeFailed as exc:
        with session_scope(url) as session:
            row = session.get(NotificationIncident, incident_id)
            if row is not None:
                row.last_error, row.claimed_at = str(exc)[:500], None
        raise
    with session_scope(url) as session:
        row = session.get(NotificationIncident, incident_id)
        assert row is not None
        row.delivered_at, row.last_error, row.claimed_at = now, None, None
        title, body = row.agency_title, row.agency_body
    _post_slack(settings, f"*{title}*\n{body}")  # once: delivered_at is set once
    report.delivered = 1
    logger.info("notification %s %s delivered", kind, subject)
    return report


def _message(
    incident_id: int,
    client_id: int,
    address: str,
    for_agency: bool,
    status: str,
    at: datetime,
    due: datetime | None = None,
) -> NotificationMessage:
    return NotificationMessage(
        incident_id=incident_id,
        client_id=client_id,
        email=address.lower(),
        for_agency=for_agency,
        status=status,
        at=at,
        due_at=due,
    )


def deliver_pending(settings: Settings, *, now: datetime | None = None) -> DeliveryReport:
    """Deliver every incident not delivered yet (oldest first), then the digests that are due."""
    report = DeliveryReport()
    with session_scope(settings.platform_database_url) as session:
        pending = list(
            session.scalars(
                select(NotificationIncident.id)
                .where(NotificationIncident.delivered_at.is_(None))
                .order_by(NotificationIncident.opened_at, NotificationIncident.id)
                .limit(500)
            )
        )
    for incident_id in pending:
        try:
            one = deliver_incident(settings, incident_id, now=now)
        except NoticeFailed as exc:
            report.errors.append(str(exc))
            break  # the relay is down: the rest waits for the next pass
        report.delivered += one.delivered
        report.sent += one.sent
        report.queued += one.queued
    digests = send_digests(settings, now=now)
    report.digests, report.errors = digests.digests, report.errors + digests.errors
    return report


def send_digests(settings: Settings, *, now: datetime | None = None) -> DeliveryReport:
    """Send each person whose hour is over one digest of the messages queued for them."""
    now = now or utcnow()
    report = DeliveryReport()
    url = settings.platform_database_url
    with session_scope(url) as session:
        due = list(
            session.scalars(
                select(NotificationMessage.email)
                .where(NotificationMessage.status == "queued")
                .group_by(NotificationMessage.email)
                .having(func.min(NotificationMessage.due_at) <= now)
            )
        )
    for email in due:
        with session_scope(url) as session:
            rows = list(
                session.execute(
                    select(NotificationMessage, NotificationIncident)
                    .join(NotificationIncident)
                    .where(
                        NotificationMessage.email == email,
                        NotificationMessage.status == "queued",
                    )
                    .order_by(NotificationMessage.at, NotificationMessage.id)
                )
            )
            ids = [message.id for message, _ in rows]
            parts = []
            for message, incident in rows:
                title = incident.agency_title if message.for_agency else incident.client_title
                body = incident.agency_body if message.for_agency else incident.client_body
                parts.append(f"== {title} ==\n\n{body.strip()}")
            client_ids = {message.client_id for message, _ in rows}
        if not ids:
            continue
        notice = Notice.of(
            [email],
            f"{len(ids)} more notifications from the last hour",
            "You got several notifications within an hour; here are the others in one message."
            "\n\n" + "\n\n".join(parts) + "\n",
        )
        try:
            send_notice(
                settings,
                notice,
                client_id=next(iter(client_ids)) if len(client_ids) == 1 else None,
                target="notifications/digest",
            )
        except NoticeFailed as exc:
            report.errors.append(str(exc))
            break
        with session_scope(url) as session:
            for message in session.scalars(
                select(NotificationMessage).where(NotificationMessage.id.in_(ids))
            ):
                message.status, message.digested_at = "digested", now
        report.digests += 1
    return report


def notify(settings: Settings, incident: Incident, *, now: datetime | None = None) -> bool:
    """Record ``incident`` and deliver it now if it is new or still undelivered.

    Returns True when it is delivered (now or before); raises :class:`NoticeFailed` when the
    relay refused (the incident stays recorded for a later pass).
    """
    open_incident(settings, incident, now=now)
    with session_scope(settings.platform_database_url) as session:
        row = session.scalar(
            select(NotificationIncident).where(
                NotificationIncident.kind == incident.kind,
                NotificationIncident.subject == _subject_key(incident.subject),
            )
        )
        assert row is not None
        incident_id, delivered = row.id, row.delivered_at is not None
    if not delivered:
        deliver_incident(settings, incident_id, now=now)
    return True


__all__ = [
    "DeliveryReport",
    "Incident",
    "agency_recipients",
    "client_recipients",
    "deliver_incident",
    "deliver_pending",
    "notify",
    "open_incident",
    "send_digests",
]
