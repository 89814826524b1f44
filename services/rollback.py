"""Roll an activation back to one of its recorded versions (a new version with the old values)."""

from __future__ import annotations

from sqlalchemy import select

from agency.db import Activation, ActivationVersion
from agency.db.models import Release
from agency.errors import NotFound
from agency.settings import Settings
from services.activations import ActivationView, activate
from services.audit import audit
from services.clients import get_client_record
from services.scoping import client_session


def rollback(
    settings: Settings, client: str, workflow: str, version: int, *, actor: str = "cli"
) -> ActivationView:
    """Re-activate ``workflow`` for ``client`` with the settings, cron, time zone and release
    (code) of ``version``; the history gains a new version, nothing is rewritten."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        old = session.scalar(
            select(ActivationVersion)
            .join(Activation, Activation.id == ActivationVersion.activation_id)
            .where(
                Activation.client_id == record.id,
                Activation.workflow == workflow,
                ActivationVersion.version == version,
            )
        )
        if old is None:
            raise NotFound(f"Workflow '{workflow}' has no version {version} for '{client}'.")
        values = (dict(old.settings), old.cron, old.timezone)
        release = (
            session.scalar(select(Release.digest).where(Release.id == old.release_id))
            if old.release_id is not None
            else None
        )
    view = activate(
        settings, client, workflow, values[0], values[1], values[2], actor=actor, release=release
    )
    with client_session(settings, client) as session:
        audit(
            session,
            actor=actor,
            action="activation.rollback",
            target=workflow,
            client_id=get_client_record(session, client).id,
            detail={"to_version": version, "new_version": view.version, "release": view.release},
        )
    return view


__all__ = ["rollback"]
