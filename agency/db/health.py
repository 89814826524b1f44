"""Credential health rows: read, record and lock (the refresh lock of an OAuth credential)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agency.db.models import Client, CredentialStatus, utcnow


def _client_id(session: Session, client: str) -> int | None:
    return session.scalar(select(Client.id).where(Client.slug == client))


def health_row(session: Session, client: str, kind: str, name: str) -> CredentialStatus | None:
    """The health row of one credential, if it has one."""
    return session.scalar(
        select(CredentialStatus)
        .join(Client, Client.id == CredentialStatus.client_id)
        .where(Client.slug == client, CredentialStatus.kind == kind, CredentialStatus.name == name)
    )


def lock_health_row(session: Session, client: str, kind: str, name: str) -> CredentialStatus:
    """Lock (creating if needed) the credential's row until ``session`` ends.

    The first statement is an UPDATE of the row: PostgreSQL takes the row lock, SQLite the
    database's write lock, so a second refresher of the same credential (any process) waits here
    and then finds the tokens already refreshed. Call it first in its transaction.
    """
    client_id = select(Client.id).where(Client.slug == client).scalar_subquery()
    match = (
        CredentialStatus.client_id == client_id,
        CredentialStatus.kind == kind,
        CredentialStatus.name == name,
    )
    locked = session.execute(
        update(CredentialStatus).where(*match).values(kind=CredentialStatus.kind)
    )
    if locked.rowcount == 0:  # type: ignore[attr-defined]
        cid = _client_id(session, client)
        if cid is None:
            raise LookupError(client)
        try:
            with session.begin_nested():
                session.add(CredentialStatus(client_id=cid, kind=kind, name=name))
        except IntegrityError:
            pass  # created meanwhile by another process
        session.execute(update(CredentialStatus).where(*match).values(kind=CredentialStatus.kind))
    row = health_row(session, client, kind, name)
    assert row is not None
    return row


def record_health(
    session: Session, client: str, kind: str, name: str, status: str, **fields: Any
) -> CredentialStatus | None:
    """Set a credential's status (and any other column); a breakage starts ``failing_since``
    once, a recovery clears it and the notification mark. None when the client is unknown."""
    row = health_row(session, client, kind, name)
    if row is None:
        cid = _client_id(session, client)
        if cid is None:
            return None
        row = CredentialStatus(client_id=cid, kind=kind, name=name)
        session.add(row)
    now: datetime = utcnow()
    broken = status in ("needs_reconnect", "failing")
    if broken and row.failing_since is None:
        row.failing_since = now
    if not broken:
        row.failing_since, row.notified_at = None, None
    row.status = status
    for key, value in fields.items():
        setattr(row, key, value)
    return row


def forget_health(session: Session, client_id: int, kind: str, name: str) -> None:
    """Delete the health row of a credential that is gone."""
    session.execute(
        delete(CredentialStatus).where(
            CredentialStatus.client_id == client_id,
            CredentialStatus.kind == kind,
            CredentialStatus.name == name,
        )
    )
