"""Store, list and delete a client's credentials (values never come back out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import blocks
from agency.db import forget_health
from agency.settings import Settings
from services.audit import audit
from services.clients import get_client_record
from services.scoping import client_session


@dataclass(frozen=True)
class CredentialView:
    """A stored credential as faces may show it: no values."""

    kind: str
    name: str
    store: str


def set_credential(
    settings: Settings,
    client: str,
    kind: str,
    name: str,
    data: dict[str, Any],
    *,
    actor: str = "cli",
) -> CredentialView:
    """Validate and store a credential for an existing client, then audit it (without values)."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        block = blocks.save_credential(client, kind, name, data, settings=settings)
        audit(
            session,
            actor=actor,
            action="credential.set",
            target=f"{kind}/{name}",
            client_id=record.id,
            detail={"store": block.store},
        )
    return CredentialView(kind, name, block.store)


def list_credentials(settings: Settings, client: str) -> list[CredentialView]:
    """The client's credential references."""
    with client_session(settings, client) as session:
        get_client_record(session, client)
    return [CredentialView(c.kind, c.name, c.store) for c in blocks.list_credentials(client)]


def delete_credential(
    settings: Settings, client: str, kind: str, name: str, *, actor: str = "cli"
) -> None:
    """Delete the stored values and the reference."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        blocks.delete_credential(client, kind, name)
        forget_health(session, record.id, kind, name)
        audit(
            session,
            actor=actor,
            action="credential.delete",
            target=f"{kind}/{name}",
            client_id=record.id,
        )
