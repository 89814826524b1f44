"""Portal sign-in: argon2 password hashes, lockout after repeated failures, session expiry.

Failed and successful sign-ins are audit rows (``auth.failed`` / ``auth.login``), and the lockout
is computed from them: ``lockout_failures`` failures (a wrong current password when changing it
counts too) with no success or password change (``user.password``) in between lock the account
for ``lockout_minutes`` after the last failure. No extra table is needed.

Every portal service takes the :class:`Principal` returned by :func:`authenticate` and scopes to
its client with :func:`scope_client`; a client user can never name another client.

A principal is re-checked against the platform DB at every :func:`check_session` (one query by
primary key): the user must still exist with the same role and client, the session must have been
issued after ``users.sessions_valid_after`` (moved by a password change, a role change), and a
client user's client must be ``active``. A user created with a temporary password
(``must_change_password``) may only choose a new one (:func:`change_password`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.db import AuditLog, Client, User, UserRole, session_scope, utcnow
from agency.errors import AccessDenied, AuthFailed, InputInvalid, NotFound
from agency.settings import Settings
from services.audit import audit
from services.clients import get_client_record

_HASHER = PasswordHasher()
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 10
_BAD_LOGIN = "Wrong email or password."
_ENDED = "Your session has ended because your password or role changed. Please sign in again."
_GONE = "This account no longer exists. Contact your agency."
_SUSPENDED = "This account is suspended. Contact your agency."
_SET_PASSWORD_FIRST = "Choose your own password first: a temporary password can only be replaced."
# audit actions that end a run of failed sign-ins (a proof of the password, or an admin reset)
_RESETS_FAILURES = ("auth.login", "user.password")


@dataclass(frozen=True)
class Principal:
    """A signed-in portal user: who, which role, which client (``None`` for agency staff).

    ``issued_at`` and ``database_url`` (the platform DB it was issued from, never shown: it may
    hold a DB password) let :func:`check_session` re-check it with nothing else passed.
    """

    user_id: int
    email: str
    role: str
    client: str | None
    expires_at: datetime
    issued_at: datetime
    database_url: str = field(repr=False)
    must_change_password: bool = False

    @property
    def is_agency(self) -> bool:
        """True for agency staff, who may act for every client."""
        return self.role == "agency"


@dataclass(frozen=True)
class Invite:
    """A created client user and the temporary password to hand over (shown once)."""

    email: str
    client: str | None
    temporary_password: str


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``."""
    return _HASHER.hash(password)


def _check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputInvalid(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def _normal_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL_RE.match(email):
        raise InputInvalid(f"'{email}' is not an email address.")
    return email


def _check_role(role: str, client: str | None) -> None:
    if role not in ("client", "agency"):
        raise InputInvalid("Role must be 'client' or 'agency'.")
    if (role == "client") != (client is not None):
        raise InputInvalid("A client user needs a client; an agency user has none.")


def _user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        raise NotFound(f"There is no user with email '{email}'.")
    return user


def find_user(settings: Settings, email: str) -> str:
    """The normalized ``email`` of an existing user; ``NotFound`` otherwise (ask before a
    password prompt)."""
    email = _normal_email(email)
    with session_scope(settings.platform_database_url) as session:
        return _user(session, email).email


def create_user(
    settings: Settings,
    email: str,
    password: str,
    role: str,
    client: str | None = None,
    *,
    actor: str = "cli",
    must_change_password: bool = False,
) -> None:
    """Create a portal user; ``client`` is required for role ``client`` and refused for agency.

    ``must_change_password`` makes ``password`` temporary: the user must choose their own at
    their first sign-in before anything else.
    """
    email = _normal_email(email)
    _check_password_rules(password)
    _check_role(role, client)
    with session_scope(settings.platform_database_url) as session:
        if session.scalar(select(User).where(User.email == email)) is not None:
            raise InputInvalid(f"A user with email '{email}' already exists.")
        record = get_client_record(session, client) if client else None
        session.add(
            User(
                email=email,
                password_hash=hash_password(password),
                role=role,
                client_id=record.id if record else None,
                must_change_password=must_change_password,
            )
        )
        audit(
            session,
            actor=actor,
            action="user.create",
            target=email,
            client_id=record.id if record else None,
            detail={"role": role, "must_change_password": must_change_password},
        )


def create_invited_user(
    settings: Settings, email: str, client: str, *, actor: str = "cli"
) -> Invite:
    """Create a client user with a random temporary password (returned once), to be replaced
    by the user at their first sign-in."""
    password = secrets.token_urlsafe(12)
    create_user(settings, email, password, "client", client, actor=actor, must_change_password=True)
    return Invite(_normal_email(email), client, password)


def invite_user(settings: Settings, principal: Principal, client: str, email: str) -> Invite:
    """Agency only: create a client user with a random temporary password, returned once."""
    require_agency(principal)
    return create_invited_user(settings, email, client, actor=principal.email)


def _locked_until(session: Session, email: str, settings: Settings) -> datetime | None:
    rows = session.scalars(
        select(AuditLog)
        .where(
            AuditLog.target == email,
            AuditLog.action.in_(("auth.failed", *_RESETS_FAILURES)),
        )
        .order_by(AuditLog.id.desc())
        .limit(settings.lockout_failures)
    ).all()
    if len(rows) < settings.lockout_failures or any(r.action in _RESETS_FAILURES for r in rows):
        return None
    until = rows[0].at + timedelta(minutes=settings.lockout_minutes)
    return until if until > utcnow() else None


def _password_matches(user: User | None, password: str) -> bool:
    if user is None:
        return False
    try:
        return _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(settings: Settings, email: str, password: str) -> Principal:
    """Check the password and return a session principal; raise ``AuthFailed`` (same message for
    unknown email and wrong password), or ``AuthFailed`` saying the account is locked."""
    # taken before the user row is read: a password change committed meanwhile ends this session
    issued = utcnow()
    email = email.strip().lower()
    with session_scope(settings.platform_database_url) as session:
        locked = _locked_until(session, email, settings)
        if locked is not None:
            audit(session, actor=email, action="auth.locked", target=email)
            session.commit()
            raise AuthFailed(f"Too many failed sign-ins. Try again after {locked:%H:%M} UTC.")
        user = session.scalar(select(User).where(User.email == email))
        client_id = user.client_id if user is not None else None
        if not _password_matches(user, password):
            audit(session, actor=email, action="auth.failed", target=email, client_id=client_id)
            session.commit()
            raise AuthFailed(_BAD_LOGIN)
        assert user is not None
        if _HASHER.check_needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        slug = None
        if user.client_id is not None:
            client = session.get(Client, user.client_id)
            assert client is not None
            if client.status != "active":
                raise AuthFailed(_SUSPENDED)
            slug = client.slug
        audit(session, actor=email, action="auth.login", target=email, client_id=client_id)
        return Principal(
            user.id,
            email,
            user.role,
            slug,
            issued + timedelta(minutes=settings.session_minutes),
            issued_at=issued,
            database_url=settings.platform_database_url,
            must_change_password=user.must_change_password,
        )


def check_session(principal: Principal | None, *, allow_password_change: bool = False) -> Principal:
    """Return ``principal`` if it is still valid, re-checked against the platform DB.

    Raise ``AuthFailed`` when absent or expired, when the user was removed, their password or
    role changed since the principal was issued, or their client is suspended; ``AccessDenied``
    while they still have to replace a temporary password (unless ``allow_password_change``).
    The principal returned carries the user's current ``must_change_password``.
    """
    if principal is None:
        raise AuthFailed("Please sign in.")
    if principal.expires_at <= utcnow():
        raise AuthFailed("Your session has expired. Please sign in again.")
    with session_scope(principal.database_url) as session:
        row = session.execute(
            select(
                User.email,
                User.role,
                User.created_at,
                User.sessions_valid_after,
                User.must_change_password,
                Client.slug,
                Client.status,
            )
            .outerjoin(Client, Client.id == User.client_id)
            .where(User.id == principal.user_id)
        ).one_or_none()
    if row is None or row.email != principal.email:
        raise AuthFailed(_GONE)
    cut = row.sessions_valid_after
    if (
        row.created_at > principal.issued_at
        or (cut is not None and principal.issued_at < cut)
        or row.role != principal.role
        or row.slug != principal.client
    ):
        raise AuthFailed(_ENDED)
    if row.slug is not None and row.status != "active":
        raise AuthFailed(_SUSPENDED)
    if row.must_change_password and not allow_password_change:
        raise AccessDenied(_SET_PASSWORD_FIRST)
    if row.must_change_password != principal.must_change_password:
        return replace(principal, must_change_password=row.must_change_password)
    return principal


def _set_password(session: Session, user: User, password: str, *, temporary: bool) -> datetime:
    """Store ``password`` for ``user`` and end their sessions; return the cut-off instant."""
    now = utcnow()
    user.password_hash = hash_password(password)
    user.must_change_password = temporary
    user.sessions_valid_after = now
    return now


def change_password(
    settings: Settings, principal: Principal, current: str, new: str, new_again: str
) -> Principal:
    """The signed-in user replaces their own password (also a temporary one).

    Their other sessions end; the returned principal replaces ``principal`` in this one. A wrong
    ``current`` password counts as a failed sign-in (lockout), and is ``InputInvalid``.
    """
    check_session(principal, allow_password_change=True)
    if new != new_again:
        raise InputInvalid("The two new passwords differ.")
    _check_password_rules(new)
    if new == current:
        raise InputInvalid("Choose a new password that differs from the current one.")
    with session_scope(settings.platform_database_url) as session:
        locked = _locked_until(session, principal.email, settings)
        if locked is not None:
            raise AuthFailed(f"Too many failed sign-ins. Try again after {locked:%H:%M} UTC.")
        user = session.get(User, principal.user_id)
        if user is None:
            raise AuthFailed(_GONE)
        if not _password_matches(user, current):
            audit(
                session,
                actor=principal.email,
                action="auth.failed",
                target=principal.email,
                client_id=user.client_id,
                detail={"during": "password change"},
            )
            session.commit()
            raise InputInvalid("The current password is wrong.")
        cut = _set_password(session, user, new, temporary=False)
        audit(
            session,
            actor=principal.email,
            action="user.password",
            target=principal.email,
            client_id=user.client_id,
            detail={"by": "self"},
        )
    return replace(principal, issued_at=cut, must_change_password=False)


def set_password(
    settings: Settings, email: str, password: str, *, temporary: bool = False, actor: str = "cli"
) -> None:
    """Set a user's password (operator reset) and end their sessions; ``temporary`` makes them
    choose their own at their next sign-in. Ends a lockout."""
    email = _normal_email(email)
    _check_password_rules(password)
    with session_scope(settings.platform_database_url) as session:
        user = _user(session, email)
        _set_password(session, user, password, temporary=temporary)
        audit(
            session,
            actor=actor,
            action="user.password",
            target=email,
            client_id=user.client_id,
            detail={"by": "operator", "temporary": temporary},
        )


def change_role(
    settings: Settings, email: str, role: str, client: str | None = None, *, actor: str = "cli"
) -> None:
    """Make the user ``role`` (``client`` names their client for role ``client``); their
    sessions end."""
    email = _normal_email(email)
    _check_role(role, client)
    with session_scope(settings.platform_database_url) as session:
        user = _user(session, email)
        record = get_client_record(session, client) if client else None
        new_client_id = record.id if record else None
        if user.role == role and user.client_id == new_client_id:
            raise InputInvalid(f"'{email}' already has that role.")
        user_client_before = user.client_id
        old_client = session.get(Client, user.client_id) if user.client_id is not None else None
        detail = {
            "from": user.role,
            "to": role,
            "from_client": old_client.slug if old_client else None,
            "to_client": client,
        }
        user.role = cast(UserRole, role)
        user.client_id = new_client_id
        user.sessions_valid_after = utcnow()
        # the trail shows under the client the user now belongs to, else the one they left
        trail_client = new_client_id if new_client_id is not None else user_client_before
        audit(
            session,
            actor=actor,
            action="user.role",
            target=email,
            client_id=trail_client,
            detail=detail,
        )


def remove_user(settings: Settings, email: str, *, actor: str = "cli") -> None:
    """Delete the user; their open sessions end at their next interaction."""
    email = _normal_email(email)
    with session_scope(settings.platform_database_url) as session:
        user = _user(session, email)
        client_id, role = user.client_id, user.role
        session.delete(user)
        audit(
            session,
            actor=actor,
            action="user.remove",
            target=email,
            client_id=client_id,
            detail={"role": role},
        )


def sign_out(settings: Settings, principal: Principal) -> None:
    """Record the sign-out in the audit log (the face forgets the principal)."""
    with session_scope(settings.platform_database_url) as session:
        audit(session, actor=principal.email, action="auth.logout", target=principal.email)


def require_agency(principal: Principal) -> None:
    """Raise ``AccessDenied`` unless ``principal`` is agency staff (and signed in)."""
    check_session(principal)
    if not principal.is_agency:
        raise AccessDenied("Only agency staff can do this.")


def scope_client(principal: Principal, client: str | None = None) -> str:
    """The client slug ``principal`` acts for: its own for client users, any named for agency.

    A client user naming another client gets ``AccessDenied``; agency staff must name one.
    """
    check_session(principal)
    if principal.is_agency:
        if not client:
            raise InputInvalid("Choose a client first.")
        return client
    if client is not None and client != principal.client:
        raise AccessDenied("You can only see and change your own organisation's workflows.")
    assert principal.client is not None
    return principal.client


__all__ = [
    "MIN_PASSWORD_LENGTH",
    "Invite",
    "Principal",
    "authenticate",
    "change_password",
    "change_role",
    "check_session",
    "create_invited_user",
    "create_user",
    "find_user",
    "hash_password",
    "invite_user",
    "remove_user",
    "require_agency",
    "scope_client",
    "set_password",
    "sign_out",
]
