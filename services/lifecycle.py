"""A client's lifecycle after onboarding: suspend, resume, offboard. Agency only; audited.

- **Suspend** sets the client ``suspended`` and pauses the schedules of its active workflows
  (their activations keep ``active``, so resume restores exactly them). Every door then refuses
  the client: the portal at the next interaction, the client API with 403
  ``client_suspended``, webhooks with 403 (nothing enqueued).
- **Resume** sets it ``active`` again and resumes those schedules.
- **Offboard** first writes the client's data to a JSON file (client, activations and their
  versions, webhook endpoints without secrets, a summary of every run, LLM usage, the audit
  log), then deletes its Prefect deployments, chain automations and runs, every secret (Vault
  paths, policy and AppRole included) and every row of it in the platform DB. The audit log
  keeps its rows and one ``client.offboard`` row saying what went.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

import blocks
import deployments
from agency.db import (
    Activation,
    ActivationVersion,
    ApiKey,
    AuditLog,
    Client,
    LlmUsage,
    User,
    WebhookBatch,
    WebhookDelivery,
    WebhookEndpoint,
    session_scope,
    utcnow,
)
from agency.db.models import Chain
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from deployments.chaining import unchain_client
from deployments.runs import client_runs, delete_client_runs
from services.audit import audit
from services.clients import ClientView, _view, get_client_record


@dataclass(frozen=True)
class Offboarded:
    """What offboarding removed, and where the export is."""

    client: str
    export: Path
    runs: int
    deployments: int
    secrets: int
    users: int
    seconds: float


def _set_status(settings: Settings, slug: str, status: str, actor: str) -> ClientView:
    with session_scope(settings.platform_database_url) as session:
        record = get_client_record(session, slug)
        if record.status == status:
            return _view(record)
        active = session.scalars(
            select(Activation.workflow).where(
                Activation.client_id == record.id, Activation.status == "active"
            )
        ).all()
        for workflow in active:
            try:
                if status == "suspended":
                    deployments.pause(workflow, slug)
                else:
                    deployments.resume(workflow, slug)
            except NotFound:
                continue  # its deployment is gone already: nothing to pause or resume
        record.status = status  # type: ignore[assignment]
        verb = "suspend" if status == "suspended" else "resume"
        audit(
            session,
            actor=actor,
            action=f"client.{verb}",
            target=slug,
            client_id=record.id,
            detail={"schedules": sorted(active)},
        )
        session.flush()
        return _view(record)


def suspend_client(settings: Settings, slug: str, *, actor: str = "cli") -> ClientView:
    """Suspend the client: its schedules pause and every door refuses it at once."""
    return _set_status(settings, slug, "suspended", actor)


def resume_client(settings: Settings, slug: str, *, actor: str = "cli") -> ClientView:
    """Lift a suspension: the schedules of its active workflows run again."""
    return _set_status(settings, slug, "active", actor)


def _rows(session: Any, model: Any, *where: Any) -> list[dict[str, Any]]:
    columns = [c.key for c in model.__table__.columns]
    return [
        {k: getattr(row, k) for k in columns if k not in ("password_hash", "key_hash")}
        for row in session.scalars(select(model).where(*where))
    ]


def _export(settings: Settings, slug: str) -> dict[str, Any]:
    with session_scope(settings.platform_database_url) as session:
        record = get_client_record(session, slug)
        acts = select(Activation.id).where(Activation.client_id == record.id)
        data = {
            "exported_at": utcnow(),
            "client": _rows(session, Client, Client.id == record.id)[0],
            "users": _rows(session, User, User.client_id == record.id),
            "activations": _rows(session, Activation, Activation.client_id == record.id),
            "activation_versions": _rows(
                session, ActivationVersion, ActivationVersion.activation_id.in_(acts)
            ),
            "webhooks": _rows(session, WebhookEndpoint, WebhookEndpoint.activation_id.in_(acts)),
            "api_keys": _rows(session, ApiKey, ApiKey.client_id == record.id),
            "chains": _rows(session, Chain, Chain.client_id == record.id),
            "llm_usage": _rows(session, LlmUsage, LlmUsage.client == slug),
            "audit_log": _rows(session, AuditLog, AuditLog.client_id == record.id),
        }
    data["runs"] = [
        {
            "id": run.id,
            "name": run.name,
            "tags": run.tags,
            "state": run.state_type.value if run.state_type else None,
            "state_name": run.state_name,
            "created": run.created,
            "start_time": run.start_time,
            "end_time": run.end_time,
        }
        for run in client_runs(slug)
    ]
    return data


def offboard_client(
    settings: Settings, slug: str, export: Path, *, actor: str = "cli"
) -> Offboarded:
    """Export the client's data to ``export`` (JSON), then delete the client everywhere.

    The export is written (and complete) before anything is deleted; an existing file is never
    overwritten.
    """
    started = time.monotonic()
    if export.exists():
        raise InputInvalid(f"{export} exists already; choose a new file for the export.")
    data = _export(settings, slug)
    export.parent.mkdir(parents=True, exist_ok=True)
    export.write_text(json.dumps(data, indent=1, default=str))
    export.chmod(0o600)

    with session_scope(settings.platform_database_url) as session:
        record = get_client_record(session, slug)
        workflows = session.scalars(
            select(Activation.workflow).where(Activation.client_id == record.id)
        ).all()
    unchain_client(slug)
    runs = delete_client_runs(slug)
    removed = 0
    for workflow in workflows:
        try:
            deployments.deactivate(workflow, slug)
            removed += 1
        except NotFound:
            continue
    runs += delete_client_runs(slug)  # any its schedules made meanwhile
    secrets = blocks.forget_client_secrets(settings, slug)

    with session_scope(settings.platform_database_url) as session:
        record = get_client_record(session, slug)
        acts = select(Activation.id).where(Activation.client_id == record.id)
        users = len(session.scalars(select(User.id).where(User.client_id == record.id)).all())
        # children first: SQLite does not cascade unless asked, PostgreSQL would
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.activation_id.in_(acts)))
        session.execute(delete(WebhookBatch).where(WebhookBatch.activation_id.in_(acts)))
        session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.activation_id.in_(acts)))
        session.execute(delete(ActivationVersion).where(ActivationVersion.activation_id.in_(acts)))
        session.execute(delete(Chain).where(Chain.client_id == record.id))
        session.execute(delete(Activation).where(Activation.client_id == record.id))
        session.execute(delete(ApiKey).where(ApiKey.client_id == record.id))
        session.execute(delete(User).where(User.client_id == record.id))
        session.execute(delete(LlmUsage).where(LlmUsage.client == slug))
        session.execute(
            update(AuditLog).where(AuditLog.client_id == record.id).values(client_id=None)
        )
        session.execute(delete(Client).where(Client.id == record.id))
        result = Offboarded(
            slug, export, runs, removed, secrets, users, round(time.monotonic() - started, 2)
        )
        audit(
            session,
            actor=actor,
            action="client.offboard",
            target=slug,
            detail={
                "export": str(export),
                "runs": runs,
                "deployments": removed,
                "secrets": secrets,
                "users": users,
            },
        )
    return result


__all__ = ["Offboarded", "offboard_client", "resume_client", "suspend_client"]
