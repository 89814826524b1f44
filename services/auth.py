"""Portal sign-in: argon2 password hashes, lockout after repeated failures, session expiry.

Failed and successful sign-ins are audit rows (``auth.failed`` / ``auth.login``), and the lockout
is computed from them: ``lockout_failures`` failures with no success in between lock the account
for ``lockout_minutes`` after the last failure. No extra table is needed.

Every portal service takes the :class:`Principal` returned by :func:`authenticate` and scopes to
its client with :func:`scope_client`; a client user can never name another client.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.db import AuditLog, Client, User, session_scope, utcnow
from agency.errors import AccessDenied, AuthFailed, InputInvalid
from agency.settings import Settings
from services.audit import audit
from services.clients import get_client_record

_HASHER = PasswordHasher()
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 10
_BAD_LOGIN = "Wrong email or password."


@dataclass(frozen=True)
class Principal:
    """A signed-in portal user: who, which role, which client (``None`` for agency staff)."""

    user_id: int
    email: str
    role: str
    client: str | None
    expires_at: datetime

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


def create_user(
    settings: Settings,
    email: str,
    password: str,
    role: str,
    client: str | None = None,
    *,
    actor: str = "cli",
) -> None:
    """Create a portal user; ``client`` is required for role ``client`` and refused for agency."""
    email = _normal_email(email)
    _check_password_rules(password)
    if role not in ("client", "agency"):
        raise InputInvalid("Role must be 'client' or 'agency'.")
    if (role == "client") != (client is not None):
        raise InputInvalid("A client user needs a client; an agency user has none.")
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
            )
        )
        audit(
            session,
            actor=actor,
            action="user.create",
            target=email,
            client_id=record.id if record else None,
            detail={"role": role},
        )


def invite_user(settings: Settings, principal: Principal, client: str, email: str) -> Invite:
    """Agency only: create a client user with a random temporary password, returned once."""
    require_agency(principal)
    password = secrets.token_urlsafe(12)
    create_user(settings, email, password, "client", client, actor=principal.email)
    return Invite(_normal_email(email), client, password)


def _locked_until(session: Session, email: str, settings: Settings) -> datetime | None:
    rows = session.scalars(
        select(AuditLog)
        .where(AuditLog.target == email, AuditLog.action.in_(("auth.failed", "auth.login")))
        .order_by(AuditLog.id.desc())
        .limit(settings.lockout_failures)
    ).all()
    if len(rows) < settings.lockout_failures or any(r.action == "auth.login" for r in rows):
        return None
    until = rows[0].at + timedelta(minutes=settings.lockout_minutes)
    return until if until > utcnow() else None


def authenticate(settings: Settings, email: str, password: str) -> Principal:
    """Check the password and return a session principal; raise ``AuthFailed`` (same message for
    unknown email and wrong password), or ``AuthFailed`` saying the account is locked."""
    email = email.strip().lower()
    with session_scope(settings.platform_database_url) as session:
        locked = _locked_until(session, email, settings)
        if locked is not None:
            audit(session, actor=email, action="auth.locked", target=email)
            session.commit()
            raise AuthFailed(f"Too many failed sign-ins. Try again after {locked:%H:%M} UTC.")
        user = session.scalar(select(User).where(User.email == email))
        ok = False
        if user is not None:
            try:
                ok = _HASHER.verify(user.password_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        client_id = user.client_id if user is not None else None
        if not ok:
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
                raise AuthFailed("This account is suspended. Contact your agency.")
            slug = client.slug
        audit(session, actor=email, action="auth.login", target=email, client_id=client_id)
        expires = utcnow() + timedelta(minutes=settings.session_minutes)
        return Principal(user.id, email, user.role, slug, expires)


def check_session(principal: Principal | None) -> Principal:
    """Return ``principal`` if it is still valid; raise ``AuthFailed`` when absent or expired."""
    if principal is None:
        raise AuthFailed("Please sign in.")
    if principal.expires_at <= utcnow():
        raise AuthFailed("Your session has expired. Please sign in again.")
    return principal


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
    "check_session",
    "create_user",
    "hash_password",
    "invite_user",
    "require_agency",
    "scope_client",
    "sign_out",
]
