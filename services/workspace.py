"""The signed-in user's workspace: catalog, credentials, activations, webhooks, approvals.

Each function takes the session :class:`~services.auth.Principal`, resolves the client it
may act for with :func:`~services.auth.scope_client` and calls the client-keyed services
with ``actor=<user email>``, so every change is audited under the person who made it.
Webhooks and approvals come from sibling service modules when they are installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.db import Activation, ActivationVersion, AuditLog
from agency.db.models import Release
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from blocks.kinds import CREDENTIAL_KINDS
from deployments.schedules import next_runs
from flows.catalog import get_workflow, list_workflows
from flows.manifest import CredentialRequirement, WorkflowManifest
from services import activations as _activations
from services import credentials as _credentials
from services.auth import Principal, scope_client
from services.clients import get_client_record
from services.rollback import rollback
from services.scoping import client_session


@dataclass(frozen=True)
class CatalogEntry:
    """A prebuilt workflow as the client sees it, with its activation status (or ``None``)."""

    manifest: WorkflowManifest
    status: str | None
    missing_credentials: list[CredentialRequirement]

    @property
    def slug(self) -> str:
        return self.manifest.slug


@dataclass(frozen=True)
class CredentialEntry:
    """A stored credential: kind, name, store and when it was last set (never a value)."""

    kind: str
    name: str
    store: str
    set_on: datetime | None


@dataclass(frozen=True)
class VersionEntry:
    """One recorded version of an activation."""

    version: int
    status: str
    cron: str | None
    timezone: str
    settings: dict[str, Any]
    created_at: datetime
    created_by: str | None
    release: str | None = None  # short digest of the release this version ran


def _optional(module: str) -> ModuleType | None:
    """A sibling service module built separately, or ``None`` while it is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def client_timezone(settings: Settings, principal: Principal, client: str | None = None) -> str:
    """The client's IANA time zone (the default for schedules)."""
    slug = scope_client(principal, client)
    with client_session(settings, slug) as session:
        return get_client_record(session, slug).timezone


def catalog(
    settings: Settings, principal: Principal, client: str | None = None
) -> list[CatalogEntry]:
    """Every prebuilt workflow, its status for this client and the credentials still missing."""
    slug = scope_client(principal, client)
    status = {a.workflow: a.status for a in _activations.list_activations(settings, slug)}
    have = {(c.kind, c.name) for c in _credentials.list_credentials(settings, slug)}
    have_kinds = {k for k, _ in have}
    entries = []
    for manifest in list_workflows():
        missing = [
            r
            for r in manifest.credentials
            if not r.optional and not have_kinds.intersection(r.kinds)
        ]
        entries.append(CatalogEntry(manifest, status.get(manifest.slug), missing))
    return entries


def credential_kinds() -> dict[str, Any]:
    """Credential kind models by kind (their fields build the forms)."""
    return dict(CREDENTIAL_KINDS)


def credentials(
    settings: Settings, principal: Principal, client: str | None = None
) -> list[CredentialEntry]:
    """The client's stored credentials with the date each was last set."""
    slug = scope_client(principal, client)
    stored = _credentials.list_credentials(settings, slug)
    with client_session(settings, slug) as session:
        record = get_client_record(session, slug)
        rows = session.execute(
            select(AuditLog.target, AuditLog.at).where(
                AuditLog.client_id == record.id, AuditLog.action == "credential.set"
            )
        ).all()
    last: dict[str, datetime] = {}
    for target, at in rows:
        if target not in last or at > last[target]:
            last[target] = at
    return [
        CredentialEntry(c.kind, c.name, c.store, last.get(f"{c.kind}/{c.name}")) for c in stored
    ]


def save_credential(
    settings: Settings,
    principal: Principal,
    kind: str,
    name: str,
    data: dict[str, Any],
    client: str | None = None,
) -> None:
    """Validate and store (or replace) a credential of the client."""
    slug = scope_client(principal, client)
    _credentials.set_credential(settings, slug, kind, name, data, actor=principal.email)


def delete_credential(
    settings: Settings, principal: Principal, kind: str, name: str, client: str | None = None
) -> None:
    """Delete a credential of the client."""
    slug = scope_client(principal, client)
    _credentials.delete_credential(settings, slug, kind, name, actor=principal.email)


def activations(
    settings: Settings, principal: Principal, client: str | None = None
) -> list[_activations.ActivationView]:
    """The client's activations."""
    return _activations.list_activations(settings, scope_client(principal, client))


def activate_workflow(
    settings: Settings,
    principal: Principal,
    workflow: str,
    workflow_settings: dict[str, Any],
    cron: str | None,
    timezone: str | None = None,
    client: str | None = None,
) -> _activations.ActivationView:
    """Activate (or update) a workflow for the client."""
    slug = scope_client(principal, client)
    return _activations.activate(
        settings, slug, workflow, workflow_settings, cron, timezone, actor=principal.email
    )


def change_status(
    settings: Settings, principal: Principal, workflow: str, action: str, client: str | None = None
) -> _activations.ActivationView:
    """``action`` is ``pause``, ``resume`` or ``deactivate``."""
    slug = scope_client(principal, client)
    fn = {
        "pause": _activations.pause,
        "resume": _activations.resume,
        "deactivate": _activations.deactivate,
    }[action]
    return fn(settings, slug, workflow, actor=principal.email)


def history(
    settings: Settings, principal: Principal, workflow: str, client: str | None = None
) -> list[VersionEntry]:
    """The activation's versions, newest first."""
    slug = scope_client(principal, client)
    with client_session(settings, slug) as session:
        record = get_client_record(session, slug)
        rows = session.scalars(
            select(ActivationVersion)
            .join(Activation, Activation.id == ActivationVersion.activation_id)
            .where(Activation.client_id == record.id, Activation.workflow == workflow)
            .order_by(ActivationVersion.version.desc())
        ).all()
        return [
            VersionEntry(
                v.version,
                v.status,
                v.cron,
                v.timezone,
                dict(v.settings),
                v.created_at,
                v.created_by,
                _short_digest(session, v.release_id),
            )
            for v in rows
        ]


def _short_digest(session: Session, release_id: int | None) -> str | None:
    if release_id is None:
        return None
    digest = session.scalar(select(Release.digest).where(Release.id == release_id))
    return digest[:12] if digest else None


def roll_back(
    settings: Settings, principal: Principal, workflow: str, version: int, client: str | None = None
) -> _activations.ActivationView:
    """Re-activate an earlier version of the client's activation."""
    slug = scope_client(principal, client)
    return rollback(settings, slug, workflow, version, actor=principal.email)


def schedule_preview(cron: str, timezone: str, count: int = 5) -> list[datetime]:
    """The next fire times of ``cron`` in ``timezone``; raise ``InputInvalid`` when bad."""
    return next_runs(cron, timezone, count)


def manifest(workflow: str) -> WorkflowManifest:
    """The manifest of a catalog workflow."""
    return get_workflow(workflow)


# ---- webhooks (services.webhooks, when installed) ---------------------------------------


def webhooks_available() -> bool:
    return _optional("services.webhooks") is not None


def get_webhook(
    settings: Settings, principal: Principal, workflow: str, client: str | None = None
) -> Any | None:
    """The workflow's webhook endpoint (URL, verifier, active, dates), or ``None``."""
    slug = scope_client(principal, client)
    module = _optional("services.webhooks")
    return None if module is None else module.get_webhook(settings, slug, workflow)


def list_deliveries(
    settings: Settings,
    principal: Principal,
    workflow: str,
    client: str | None = None,
    limit: int = 50,
) -> list[Any]:
    """The workflow's most recent webhook deliveries: run, alone or in a batch, outcome."""
    slug = scope_client(principal, client)
    module = _optional("services.webhooks")
    if module is None:
        return []
    return list(module.list_deliveries(settings, slug, workflow=workflow, limit=limit))


def enable_webhook(
    settings: Settings,
    principal: Principal,
    workflow: str,
    verifier: str = "standard",
    client: str | None = None,
) -> Any:
    """Enable the webhook; the returned secret is shown once."""
    slug = scope_client(principal, client)
    module = _optional("services.webhooks")
    if module is None:
        raise InputInvalid("Webhooks are not available on this platform yet.")
    return module.enable_webhook(settings, slug, workflow, verifier=verifier, actor=principal.email)


def rotate_webhook_secret(
    settings: Settings, principal: Principal, workflow: str, client: str | None = None
) -> Any:
    """Issue a new webhook secret (shown once); the old one verifies for a grace period."""
    slug = scope_client(principal, client)
    module = _optional("services.webhooks")
    if module is None:
        raise InputInvalid("Webhooks are not available on this platform yet.")
    return module.rotate_webhook_secret(settings, slug, workflow, actor=principal.email)


# ---- approvals (services.approvals, when installed) ----------------------------------


def pending_approvals(
    settings: Settings, principal: Principal, client: str | None = None
) -> list[Any]:
    """Pending approval requests of the client (empty while approvals are not installed)."""
    slug = scope_client(principal, client)
    module = _optional("services.approvals")
    return [] if module is None else list(module.list_pending_approvals(settings, slug))


def answer_approval(
    settings: Settings,
    principal: Principal,
    flow_run_id: str,
    *,
    approved: bool | None = None,
    text: str | None = None,
    choice: str | None = None,
    comment: str | None = None,
    client: str | None = None,
) -> None:
    """Approve or reject a pending request of the client; the run resumes."""
    slug = scope_client(principal, client)
    module = _optional("services.approvals")
    if module is None:
        raise NotFound("There is no such approval request.")
    module.answer_approval(
        settings,
        slug,
        flow_run_id,
        approved=approved,
        text=text,
        choice=choice,
        comment=comment,
        actor=principal.email,
    )


__all__ = [
    "CatalogEntry",
    "CredentialEntry",
    "VersionEntry",
    "activate_workflow",
    "activations",
    "answer_approval",
    "catalog",
    "change_status",
    "client_timezone",
    "credential_kinds",
    "credentials",
    "delete_credential",
    "enable_webhook",
    "get_webhook",
    "history",
    "manifest",
    "pending_approvals",
    "roll_back",
    "rotate_webhook_secret",
    "save_credential",
    "schedule_preview",
    "webhooks_available",
]
