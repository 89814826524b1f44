"""Activate, pause, resume, deactivate and list a client's workflows.

Each change goes to Prefect (``deployments``) and to the platform DB (activation, its version
history and the audit log) in one transaction: if Prefect refuses, nothing is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

import deployments
from agency.db import Activation, ActivationVersion, Client, WebhookEndpoint, session_scope
from agency.db.models import Release
from agency.errors import NotFound
from agency.settings import Settings
from services.audit import audit
from services.chains import drop_chains_of, record_chain
from services.clients import get_client_record
from services.releases import check_settings, release_for_activation
from services.scoping import client_session


@dataclass(frozen=True)
class ActivationView:
    """What faces may show of an activation."""

    client: str
    workflow: str
    status: str
    cron: str | None
    timezone: str
    version: int
    workflow_version: str | None
    deployment_id: str | None
    settings: dict[str, Any]
    release: str | None = None  # short digest of the pinned release


def _view(client: Client, act: Activation) -> ActivationView:
    return ActivationView(
        client.slug,
        act.workflow,
        act.status,
        act.cron,
        act.timezone,
        act.version,
        act.workflow_version,
        act.deployment_id,
        dict(act.settings),
        _release_short(act),
    )


def _release_short(act: Activation) -> str | None:
    session = object_session(act)
    if act.release_id is None or session is None:
        return None
    digest = session.scalar(select(Release.digest).where(Release.id == act.release_id))
    return digest[:12] if digest else None


def _find(session: Session, client: Client, workflow: str) -> Activation | None:
    return session.scalar(
        select(Activation).where(Activation.client_id == client.id, Activation.workflow == workflow)
    )


def _has_webhook(session: Session, act: Activation) -> bool:
    return bool(
        session.scalar(
            select(WebhookEndpoint.active).where(WebhookEndpoint.activation_id == act.id)
        )
    )


def activate(
    settings: Settings,
    client: str,
    workflow: str,
    workflow_settings: dict[str, Any],
    cron: str | None,
    timezone: str | None = None,
    *,
    actor: str = "cli",
    after: str | None = None,
    release: str | None = None,
) -> ActivationView:
    """Create or update the client's deployment and record a new activation version.

    ``timezone`` defaults to the client's own. ``after`` chains the activation: it also runs
    when the client's own activation of that workflow completes. ``release`` (a digest prefix,
    a version or ``latest``) pins the code the client runs; without it the activation keeps its
    release, or pins the workflow's newest one (made from the files on disk if there is none).
    Invalid input raises before anything is written.
    """
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        upstream = _find(session, record, after) if after is not None else None
        if after is not None and (upstream is None or upstream.deployment_id is None):
            raise NotFound(
                f"Cannot chain after '{after}': it is not activated for client '{client}'."
            )
        act = _find(session, record, workflow)
        plan = deployments.plan(
            client,
            workflow,
            workflow_settings,
            cron,
            timezone or record.timezone,
            webhook=act is not None and _has_webhook(session, act),
        )
        pinned = release_for_activation(
            settings, session, workflow, release, act.release_id if act is not None else None
        )
        plan = replace(
            plan,
            settings=check_settings(settings, pinned, plan.settings, client),
            release=pinned.digest,
            workflow_version=pinned.workflow_version,
        )
        if act is None:
            act = Activation(client_id=record.id, workflow=workflow, version=0)
            session.add(act)
        act.version += 1
        act.settings, act.cron, act.timezone = plan.settings, plan.cron, plan.timezone
        act.status, act.workflow_version = "active", plan.workflow_version
        act.release_id = pinned.id
        session.flush()
        act.deployment_id = str(deployments.apply(plan, app_settings=settings))
        if upstream is not None:
            record_chain(session, record, upstream, act, actor=actor)
        session.add(
            ActivationVersion(
                activation_id=act.id,
                version=act.version,
                settings=plan.settings,
                cron=plan.cron,
                timezone=plan.timezone,
                workflow_version=plan.workflow_version,
                release_id=pinned.id,
                status="active",
                created_by=actor,
            )
        )
        audit(
            session,
            actor=actor,
            action="activation.activate",
            target=workflow,
            client_id=record.id,
            detail={
                "version": act.version,
                "cron": plan.cron,
                "timezone": plan.timezone,
                "release": pinned.digest[:12],
            },
        )
        session.flush()
        return _view(record, act)


def _change_status(
    settings: Settings, client: str, workflow: str, status: str, actor: str
) -> ActivationView:
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        act = _find(session, record, workflow)
        if act is None or act.status == "inactive":
            raise NotFound(f"Workflow '{workflow}' is not activated for client '{client}'.")
        if status == "paused":
            deployments.pause(workflow, client)
        elif status == "active":
            deployments.resume(workflow, client)
        else:
            drop_chains_of(session, record, workflow, actor=actor)
            deployments.deactivate(workflow, client)
            act.deployment_id = None
        act.status = status  # type: ignore[assignment]
        audit(
            session,
            actor=actor,
            action=f"activation.{status}",
            target=workflow,
            client_id=record.id,
        )
        session.flush()
        return _view(record, act)


def pause(settings: Settings, client: str, workflow: str, *, actor: str = "cli") -> ActivationView:
    """Pause the schedule; runs already started finish."""
    return _change_status(settings, client, workflow, "paused", actor)


def resume(settings: Settings, client: str, workflow: str, *, actor: str = "cli") -> ActivationView:
    """Resume a paused activation."""
    return _change_status(settings, client, workflow, "active", actor)


def deactivate(
    settings: Settings, client: str, workflow: str, *, actor: str = "cli"
) -> ActivationView:
    """Remove the deployment; the activation and its history stay, marked inactive."""
    return _change_status(settings, client, workflow, "inactive", actor)


def list_activations(settings: Settings, client: str | None = None) -> list[ActivationView]:
    """Activations of one client (in its client-scoped transaction), or of every client."""
    scope = (
        session_scope(settings.platform_database_url)
        if client is None
        else client_session(settings, client)
    )
    with scope as session:
        query = select(Client, Activation).join(Activation, Activation.client_id == Client.id)
        if client is not None:
            query = query.where(Client.id == get_client_record(session, client).id)
        rows = session.execute(query.order_by(Client.slug, Activation.workflow)).all()
        return [_view(c, a) for c, a in rows]
