"""Each person's notification switches: every kind is on until they switch it off.

Client users' rows are read and written in a client-scoped transaction (row-level security on
PostgreSQL); agency staff's rows belong to no client.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.db import User, session_scope, utcnow
from agency.db.models import NotificationPreference
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from services.audit import audit
from services.auth import Principal, check_session
from services.clients import get_client_record
from services.notifications.kinds import KINDS
from services.scoping import client_session


def _session(settings: Settings, principal: Principal) -> AbstractContextManager[Session]:
    if principal.client is not None:
        return client_session(settings, principal.client)
    return session_scope(settings.platform_database_url)


def _read(session: Session, user_id: int) -> dict[str, bool]:
    chosen = dict(
        session.execute(
            select(NotificationPreference.kind, NotificationPreference.enabled).where(
                NotificationPreference.user_id == user_id
            )
        ).all()
    )
    return {kind: bool(chosen.get(kind, True)) for kind in KINDS}


def get_preferences(settings: Settings, principal: Principal) -> dict[str, bool]:
    """The signed-in person's switches, one per kind of :data:`KINDS` (True: they get it)."""
    check_session(principal)
    with _session(settings, principal) as session:
        return _read(session, principal.user_id)


def set_preferences(
    settings: Settings, principal: Principal, choices: Mapping[str, bool]
) -> dict[str, bool]:
    """Switch kinds on or off for the signed-in person; returns all their switches.

    An unknown kind raises :class:`InputInvalid` and nothing is saved.
    """
    check_session(principal)
    unknown = sorted(set(choices) - set(KINDS))
    if unknown:
        raise InputInvalid(f"Unknown notification kind: {', '.join(unknown)}.")
    with _session(settings, principal) as session:
        user = session.get(User, principal.user_id)
        if user is None:
            raise NotFound("Your account no longer exists.")
        rows = {
            row.kind: row
            for row in session.scalars(
                select(NotificationPreference).where(NotificationPreference.user_id == user.id)
            )
        }
        for kind, enabled in choices.items():
            row = rows.get(kind)
            if row is None:
                session.add(
                    NotificationPreference(
                        user_id=user.id, client_id=user.client_id, kind=kind, enabled=enabled
                    )
                )
            elif row.enabled != enabled:
                row.enabled, row.updated_at = enabled, utcnow()
        client_id = get_client_record(session, principal.client).id if principal.client else None
        audit(
            session,
            actor=principal.email,
            action="notifications.preferences",
            target=f"user/{user.id}",
            client_id=client_id,
            detail={kind: bool(on) for kind, on in choices.items()},
        )
        session.flush()
        return _read(session, user.id)


__all__ = ["get_preferences", "set_preferences"]
