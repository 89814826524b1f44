"""The demo mail catcher's messages (a Maildir under ``<home>/demo/inbox``), newest first."""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from agency.settings import Settings
from services.auth import Principal, require_agency
from services.demo.layout import DemoLayout


@dataclass(frozen=True)
class InboxMessage:
    """One caught email as the portal shows it."""

    key: str
    sender: str
    recipients: str
    subject: str
    date: str
    text: str


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def read_inbox(directory: Path, limit: int = 50) -> list[InboxMessage]:
    """Up to ``limit`` messages of the Maildir ``directory``, newest first (none if missing)."""
    if not directory.exists():
        return []
    box = mailbox.Maildir(directory, create=False)
    parser = BytesParser(policy=policy.default)
    found: list[tuple[float, InboxMessage]] = []
    for key in box.keys():
        caught = box.get_message(key)  # a MaildirMessage: get_date() is when it arrived
        message = parser.parsebytes(caught.as_bytes())
        assert isinstance(message, EmailMessage)
        found.append(
            (
                caught.get_date(),
                InboxMessage(
                    key=key,
                    sender=str(message["From"] or ""),
                    recipients=str(message["To"] or ""),
                    subject=str(message["Subject"] or ""),
                    date=str(message["Date"] or _iso(caught.get_date())),
                    text=_text(message),
                ),
            )
        )
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [m for _, m in found[:limit]]


def demo_inbox(settings: Settings, principal: Principal, limit: int = 50) -> list[InboxMessage]:
    """The demo mail catcher's messages for an agency user (``AccessDenied`` for anyone else)."""
    require_agency(principal)
    return read_inbox(DemoLayout.of(settings).inbox, limit)
