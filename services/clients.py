"""Onboard and list clients."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

import blocks
from agency.db import Client, session_scope
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from blocks.names import check_slug
from deployments.schedules import check_timezone
from services.audit import audit

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class ClientView:
    """What faces may show of a client."""

    slug: str
    name: str
    timezone: str
    contact_emails: list[str]
    status: str


def _view(client: Client) -> ClientView:
    return ClientView(
        client.slug, client.name, client.timezone, list(client.contact_emails), client.status
    )


def get_client_record(session: Session, slug: str) -> Client:
    """The client row for ``slug``; raise ``NotFound``."""
    client = session.scalar(select(Client).where(Client.slug == slug))
    if client is None:
        raise NotFound(f"Unknown client '{slug}'. List clients with: agency client list")
    return client


def add_client(
    settings: Settings,
    slug: str,
    name: str,
    timezone: str = "UTC",
    contact_emails: list[str] | None = None,
    *,
    actor: str = "cli",
) -> ClientView:
    """Create a client after validating slug, time zone and emails; nothing is written on error."""
    check_slug(slug, "client slug")
    check_timezone(timezone)
    emails = contact_emails or []
    bad = [e for e in emails if not _EMAIL_RE.match(e)]
    if bad:
        raise InputInvalid(f"Invalid contact email(s): {', '.join(bad)}.")
    with session_scope(settings.platform_database_url) as session:
        if session.scalar(select(Client).where(Client.slug == slug)) is not None:
            raise InputInvalid(f"Client '{slug}' already exists.")
        client = Client(slug=slug, name=name or slug, timezone=timezone, contact_emails=emails)
        session.add(client)
        session.flush()
        audit(
            session,
            actor=actor,
            action="client.create",
            target=slug,
            client_id=client.id,
            detail={"timezone": timezone},
        )
        if settings.uses_vault:
            # inside the transaction: if Vault refuses, the client is not created either
            blocks.onboard_client_vault(settings, slug)
            audit(
                session,
                actor=actor,
                action="vault.bootstrap",
                target=slug,
                client_id=client.id,
                detail={"policy": f"client-{slug}"},
            )
        return _view(client)


def list_clients(settings: Settings) -> list[ClientView]:
    """Every client, by slug."""
    with session_scope(settings.platform_database_url) as session:
        return [_view(c) for c in session.scalars(select(Client).order_by(Client.slug))]
