"""Per-client API keys for the client API: created once, stored as a SHA-256 digest, revocable.

Keys are 256-bit random tokens (``agk_<prefix>_<secret>``), so a fast digest is enough; the
prefix is kept in clear to recognise a key in lists.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from agency.db import ApiKey, Client, session_scope, utcnow
from agency.errors import ClientSuspended, NotFound
from agency.settings import Settings
from blocks.names import check_slug
from services.audit import audit
from services.clients import get_client_record
from services.scoping import client_session

KEY_PREFIX = "agk_"


@dataclass(frozen=True)
class ApiKeyView:
    """An API key as faces may show it: no secret."""

    id: int
    client: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key, returned once."""

    id: int
    key: str


def hash_key(key: str) -> str:
    """The stored digest of ``key``."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_api_key(
    settings: Settings, client: str, name: str = "default", *, actor: str = "cli"
) -> CreatedApiKey:
    """Create a key for ``client``; the returned ``key`` is never shown again."""
    check_slug(name, "API key name")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        row = ApiKey(client_id=record.id, name=name, prefix=prefix, key_hash=hash_key(key))
        session.add(row)
        session.flush()
        audit(
            session,
            actor=actor,
            action="api_key.create",
            target=name,
            client_id=record.id,
            detail={"id": row.id, "prefix": prefix},
        )
        return CreatedApiKey(row.id, key)


def list_api_keys(settings: Settings, client: str) -> list[ApiKeyView]:
    """The client's keys, oldest first."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        rows = session.scalars(
            select(ApiKey).where(ApiKey.client_id == record.id).order_by(ApiKey.id)
        )
        return [
            ApiKeyView(k.id, client, k.name, k.prefix, k.created_at, k.revoked_at) for k in rows
        ]


def revoke_api_key(settings: Settings, client: str, key_id: int, *, actor: str = "cli") -> None:
    """Revoke one of the client's keys; another client's key id is ``NotFound``."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        row = session.scalar(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.client_id == record.id)
        )
        if row is None:
            raise NotFound(f"No API key {key_id} for client '{client}'.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        audit(session, actor=actor, action="api_key.revoke", target=row.name, client_id=record.id)


def client_for_key(settings: Settings, key: str) -> str | None:
    """The slug of the client owning an active ``key``, else ``None``; raises
    ``ClientSuspended`` when that client is suspended."""
    if not key.startswith(KEY_PREFIX):
        return None
    with session_scope(settings.platform_database_url) as session:
        row = session.execute(
            select(Client.slug, Client.status)
            .join(ApiKey, ApiKey.client_id == Client.id)
            .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    if row.status != "active":
        raise ClientSuspended("This client is suspended. Contact your agency.")
    return str(row.slug)
