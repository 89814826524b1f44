"""The platform's own outgoing email: notices to clients' people and to the agency.

Notices (a broken credential; later failed runs and pending approvals) go through the SMTP relay
the agency configures with ``AGENCY_NOTIFY_SMTP_*``. Without a relay a notice is written as one
log line and an audit entry (``notice.skipped``) instead, so nothing is lost silently.

A notice's text is written by the platform and never carries a token, password or other secret;
the relay's own password is never logged.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Literal

from agency.db import session_scope
from agency.errors import AgencyError
from agency.settings import Settings
from services.audit import audit

logger = logging.getLogger("agency.notices")
TIMEOUT = 15.0


class NoticeFailed(AgencyError):
    """The notice relay refused or could not be reached; the message names no secret."""


@dataclass(frozen=True)
class Notice:
    """One email: recipients, subject and a plain-text body."""

    to: tuple[str, ...]
    subject: str
    body: str

    @classmethod
    def of(cls, to: Iterable[str], subject: str, body: str) -> Notice:
        """A notice to the distinct, non-empty addresses of ``to`` (order kept)."""
        seen: dict[str, None] = {}
        for address in to:
            address = address.strip()
            if address and address.lower() not in {a.lower() for a in seen}:
                seen[address] = None
        return cls(tuple(seen), subject, body)


def _message(settings: Settings, notice: Notice) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.notify_from
    message["To"] = ", ".join(notice.to)
    message["Subject"] = notice.subject
    message["Message-ID"] = make_msgid(domain="agency.notices")
    message.set_content(notice.body)
    return message


def _send(settings: Settings, message: EmailMessage) -> None:
    # The relay is the agency's own infrastructure, named in the platform's settings, not an
    # address a client typed: it deliberately bypasses the client egress guard (agency.egress).
    host, port = settings.notify_smtp_host or "", settings.notify_smtp_port
    context = ssl.create_default_context()
    server: smtplib.SMTP
    if settings.notify_smtp_security == "tls":
        server = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=context)
    else:
        server = smtplib.SMTP(host, port, timeout=TIMEOUT)
    with server:
        server.ehlo()
        if settings.notify_smtp_security == "starttls":
            server.starttls(context=context)
            server.ehlo()
        if settings.notify_smtp_username:
            password = settings.notify_smtp_password
            server.login(
                settings.notify_smtp_username, password.get_secret_value() if password else ""
            )
        server.send_message(message)


def send_notice(
    settings: Settings,
    notice: Notice,
    *,
    client_id: int | None = None,
    target: str = "notice",
) -> Literal["sent", "skipped"]:
    """Email ``notice`` through the notice relay, or log and audit it when none is configured.

    ``target`` names what the notice is about in the audit log (e.g. ``credential/google/x``).
    Raises :class:`NoticeFailed` when the relay cannot take it (the caller may retry later).
    """
    if not notice.to:
        return _skip(settings, notice, client_id, target, "no recipients")
    if not settings.notify_smtp_host:
        return _skip(settings, notice, client_id, target, "no notice SMTP relay configured")
    try:
        _send(settings, _message(settings, notice))
    except (OSError, smtplib.SMTPException) as exc:
        where = f"{settings.notify_smtp_host}:{settings.notify_smtp_port}"
        raise NoticeFailed(
            f"Could not send the notice '{notice.subject}' through {where} ({type(exc).__name__})."
        ) from None
    logger.info("notice sent to %d recipient(s): %s", len(notice.to), notice.subject)
    return "sent"


def _skip(
    settings: Settings, notice: Notice, client_id: int | None, target: str, why: str
) -> Literal["skipped"]:
    body = " ".join(notice.body.split())
    logger.warning(
        "notice not emailed (%s) to %s: %s | %s",
        why,
        ", ".join(notice.to) or "-",
        notice.subject,
        body,
    )
    with session_scope(settings.platform_database_url) as session:
        audit(
            session,
            actor="platform",
            action="notice.skipped",
            target=target[:200],
            client_id=client_id,
            detail={"reason": why, "to": list(notice.to), "subject": notice.subject},
        )
    return "skipped"


__all__ = ["Notice", "NoticeFailed", "send_notice"]
