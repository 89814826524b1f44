"""Enable, rotate and inspect a client's webhook trigger, and list its deliveries.

The secret is returned once by :func:`enable_webhook` and :func:`rotate_webhook_secret` and then
lives only in the secret store; views never carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

import deployments
from agency.db import Activation, Client, WebhookDelivery, WebhookEndpoint, utcnow
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from deployments.webhooks.adaptive import DEFAULT_AGE_S, DEFAULT_INFLIGHT
from deployments.webhooks.batches import MAX_EVENTS_LIMIT, MAX_WAIT_LIMIT_S
from deployments.webhooks.secrets import current_secret, store_secret
from deployments.webhooks.verifiers import VERIFIERS, check_secret, new_secret
from flows.catalog import get_workflow
from services.audit import audit
from services.clients import get_client_record
from services.scoping import client_session


@dataclass(frozen=True)
class BatchPolicy:
    """Group webhooks into one run of up to ``max_events``, waiting at most ``max_wait_s``."""

    max_events: int
    max_wait_s: float

    def check(self) -> BatchPolicy:
        """Raise ``InputInvalid`` unless 1 <= max_events <= 1000 and 0 < max_wait_s <= 3600."""
        if not 1 <= self.max_events <= MAX_EVENTS_LIMIT:
            raise InputInvalid(
                f"batch max_events must be between 1 and {MAX_EVENTS_LIMIT}, not {self.max_events}."
            )
        if not 0 < self.max_wait_s <= MAX_WAIT_LIMIT_S:
            raise InputInvalid(
                f"batch max_wait_s must be above 0 and at most {MAX_WAIT_LIMIT_S:g} seconds, "
                f"not {self.max_wait_s:g}."
            )
        return self


BATCH_MODES = ("off", "adaptive", "always")


@dataclass(frozen=True)
class AdaptivePolicy:
    """Batch only while the activation falls behind: more than ``inflight`` events in flight,
    or one waiting longer than ``age_s`` (see ``deployments.webhooks.adaptive``)."""

    inflight: int = DEFAULT_INFLIGHT
    age_s: float = DEFAULT_AGE_S

    def check(self) -> AdaptivePolicy:
        """Raise ``InputInvalid`` unless 1 <= inflight <= 1000 and 0 < age_s <= 3600."""
        if not 1 <= self.inflight <= MAX_EVENTS_LIMIT:
            raise InputInvalid(
                f"adaptive inflight must be between 1 and {MAX_EVENTS_LIMIT}, not {self.inflight}."
            )
        if not 0 < self.age_s <= MAX_WAIT_LIMIT_S:
            raise InputInvalid(
                f"adaptive age_s must be above 0 and at most {MAX_WAIT_LIMIT_S:g} seconds, "
                f"not {self.age_s:g}."
            )
        return self


@dataclass(frozen=True)
class WebhookView:
    """A webhook endpoint as faces may show it: never a secret."""

    client: str
    workflow: str
    url: str
    verifier: str
    active: bool
    created_at: datetime
    rotated_at: datetime | None
    batch: BatchPolicy | None = None
    mode: str = "off"
    adaptive: AdaptivePolicy | None = None


@dataclass(frozen=True)
class WebhookSecretView:
    """The endpoint and its secret, returned once when enabled or rotated."""

    url: str
    verifier: str
    secret: str


@dataclass(frozen=True)
class DeliveryView:
    """One accepted webhook and the flow run it became (``None`` while pending)."""

    id: str
    workflow: str
    received_at: datetime
    status: str
    flow_run_id: str | None
    batch_id: str | None = None
    outcome: str | None = None
    outcome_error: str | None = None

    @property
    def mode(self) -> str:
        """How the event ran: ``alone`` (a run of its own), ``batch``, or ``waiting``."""
        if self.batch_id is not None:
            return "batch"
        return "alone" if self.flow_run_id is not None else "waiting"


def webhook_url(settings: Settings, client: str, workflow: str) -> str:
    """``<gateway>/hooks/<client>/<workflow>``."""
    return f"{settings.gateway_url}/hooks/{client}/{workflow}"


def _activation(session: Session, client: Client, workflow: str) -> Activation:
    act = session.scalar(
        select(Activation).where(Activation.client_id == client.id, Activation.workflow == workflow)
    )
    if act is None or act.status == "inactive":
        raise NotFound(f"Workflow '{workflow}' is not activated for client '{client.slug}'.")
    return act


def _endpoint(session: Session, act: Activation) -> WebhookEndpoint | None:
    return session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.activation_id == act.id))


def enable_webhook(
    settings: Settings,
    client: str,
    workflow: str,
    *,
    verifier: str = "standard",
    actor: str = "cli",
    secret: str | None = None,
    rate_limit_per_hour: int | None = None,
    batch: BatchPolicy | None = None,
    mode: str | None = None,
    adaptive: AdaptivePolicy | None = None,
) -> WebhookSecretView:
    """Turn on the webhook trigger of an activation and return its URL and secret (shown once).

    ``secret`` is for senders that issue their own (Stripe, Slack, Shopify); by default one is
    generated. Enabling again replaces the secret, the verifier and the batch policy.

    ``mode`` says how events become runs (only workflows that accept batches can batch):
    ``off``, one run per event; ``always``, runs of ``events: [...]`` by the ``batch`` policy;
    ``adaptive`` (the default for workflows that accept batches), one run per event until the
    activation falls behind by ``adaptive``'s thresholds, then runs of up to
    ``batch.max_events`` (100) events. A ``batch`` without a mode means ``always``. The
    deployment moves to the webhook work pool (``settings.webhook_work_pool``).
    """
    if verifier not in VERIFIERS:
        raise InputInvalid(f"Unknown verifier '{verifier}': use one of {', '.join(VERIFIERS)}.")
    manifest = get_workflow(workflow)
    if "webhook" not in manifest.triggers:
        raise InputInvalid(f"Workflow '{workflow}' cannot be started by a webhook.")
    mode = _batch_mode(workflow, manifest.accepts_batches, mode, batch)
    if batch is not None:
        batch.check()
    adaptive = (adaptive or AdaptivePolicy()).check() if mode == "adaptive" else None
    if rate_limit_per_hour is not None and rate_limit_per_hour < 1:
        raise InputInvalid("The rate limit must be at least 1 run per hour.")
    try:
        value = check_secret(verifier, secret) if secret else new_secret(verifier)
    except ValueError as exc:
        raise InputInvalid(f"Invalid webhook secret: {exc}.") from None
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        act = _activation(session, record, workflow)
        endpoint = _endpoint(session, act)
        if endpoint is None:
            endpoint = WebhookEndpoint(activation_id=act.id)
            session.add(endpoint)
        endpoint.verifier, endpoint.active = verifier, True
        endpoint.rate_limit_per_hour = rate_limit_per_hour
        endpoint.batch_max_events = batch.max_events if batch else None
        endpoint.batch_max_wait_s = batch.max_wait_s if batch else None
        endpoint.batch_mode = mode
        endpoint.adaptive_inflight = adaptive.inflight if adaptive else None
        endpoint.adaptive_age_s = adaptive.age_s if adaptive else None
        _route(settings, act, webhook=True)
        store_secret(settings, client, workflow, value)
        audit(
            session,
            actor=actor,
            action="webhook.enable",
            target=workflow,
            client_id=record.id,
            detail={
                "verifier": verifier,
                "batch": None if batch is None else vars(batch),
                "mode": mode,
                "adaptive": None if adaptive is None else vars(adaptive),
            },
        )
    return WebhookSecretView(webhook_url(settings, client, workflow), verifier, value)


def _batch_mode(
    workflow: str, accepts_batches: bool, mode: str | None, batch: BatchPolicy | None
) -> str:
    """The endpoint's batch mode from what was asked, or ``InputInvalid`` saying what to change."""
    if mode is None:
        mode = "always" if batch is not None else ("adaptive" if accepts_batches else "off")
    if mode not in BATCH_MODES:
        raise InputInvalid(f"Unknown batch mode '{mode}': use one of {', '.join(BATCH_MODES)}.")
    if mode != "off" and not accepts_batches:
        raise InputInvalid(
            f"Workflow '{workflow}' does not accept batches: it handles one event per run. "
            "Enable its webhook without a batch."
        )
    if mode == "always" and batch is None:
        raise InputInvalid("Batch mode 'always' needs a batch size (--batch-max-events).")
    if mode == "off" and batch is not None:
        raise InputInvalid("Batch mode 'off' takes no batch size: drop --batch-max-events.")
    return mode


def rotate_webhook_secret(
    settings: Settings, client: str, workflow: str, *, actor: str = "cli"
) -> WebhookSecretView:
    """Issue a new secret; the old one keeps verifying for the configured grace period."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        act = _activation(session, record, workflow)
        endpoint = _endpoint(session, act)
        if endpoint is None:
            raise NotFound(f"No webhook is enabled for '{workflow}' of client '{client}'.")
        value = new_secret(endpoint.verifier)
        store_secret(settings, client, workflow, value, current_secret(settings, client, workflow))
        endpoint.rotated_at = utcnow()
        audit(
            session,
            actor=actor,
            action="webhook.rotate",
            target=workflow,
            client_id=record.id,
            detail={"grace_seconds": settings.webhook_rotation_grace_seconds},
        )
        verifier = endpoint.verifier
    return WebhookSecretView(webhook_url(settings, client, workflow), verifier, value)


def disable_webhook(
    settings: Settings, client: str, workflow: str, *, actor: str = "cli"
) -> WebhookView:
    """Stop accepting webhooks for the activation (requests then get 409)."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        act = _activation(session, record, workflow)
        endpoint = _endpoint(session, act)
        if endpoint is None:
            raise NotFound(f"No webhook is enabled for '{workflow}' of client '{client}'.")
        endpoint.active = False
        _route(settings, act, webhook=False)
        audit(session, actor=actor, action="webhook.disable", target=workflow, client_id=record.id)
        return _view(settings, client, workflow, endpoint)


def _route(settings: Settings, act: Activation, *, webhook: bool) -> None:
    """Move the activation's deployment to the pool for its trigger (prefork for webhooks)."""
    if act.deployment_id is not None:
        pool = settings.pool_for(webhook=webhook)
        prefork = webhook and pool != settings.work_pool
        deployments.move_to_pool(UUID(act.deployment_id), pool, prefork=prefork)


def _view(settings: Settings, client: str, workflow: str, e: WebhookEndpoint) -> WebhookView:
    batch = (
        BatchPolicy(e.batch_max_events, e.batch_max_wait_s or 0.0)
        if e.batch_max_events is not None
        else None
    )
    adaptive = (
        AdaptivePolicy(e.adaptive_inflight or DEFAULT_INFLIGHT, e.adaptive_age_s or DEFAULT_AGE_S)
        if e.batch_mode == "adaptive"
        else None
    )
    return WebhookView(
        client,
        workflow,
        webhook_url(settings, client, workflow),
        e.verifier,
        e.active,
        e.created_at,
        e.rotated_at,
        batch,
        e.batch_mode,
        adaptive,
    )


def get_webhook(settings: Settings, client: str, workflow: str) -> WebhookView | None:
    """The webhook endpoint of the client's workflow, or ``None`` when none is enabled."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        act = session.scalar(
            select(Activation).where(
                Activation.client_id == record.id, Activation.workflow == workflow
            )
        )
        endpoint = None if act is None else _endpoint(session, act)
        return None if endpoint is None else _view(settings, client, workflow, endpoint)


def list_deliveries(
    settings: Settings, client: str, *, workflow: str | None = None, limit: int = 50
) -> list[DeliveryView]:
    """The client's most recent deliveries first."""
    with client_session(settings, client) as session:
        get_client_record(session, client)
        query = select(WebhookDelivery).where(WebhookDelivery.client == client)
        if workflow is not None:
            query = query.where(WebhookDelivery.workflow == workflow)
        rows = session.scalars(
            query.order_by(WebhookDelivery.received_at.desc()).limit(max(1, min(limit, 1000)))
        )
        return [
            DeliveryView(
                d.id,
                d.workflow,
                d.received_at,
                d.status,
                d.flow_run_id,
                d.batch_id,
                d.outcome,
                d.outcome_error,
            )
            for d in rows
        ]
