"""Batch triggers in the outbox: group a batch activation's deliveries into one flow run.

A webhook activation with ``batch: {max_events, max_wait_s}`` accepts deliveries like any other
(``batched`` is set on each row; an adaptive activation sets it later, see ``.adaptive``). A
dispatcher then *forms* batches: once an activation has ``max_events`` ungrouped deliveries, or
its oldest one has waited ``max_wait_s``, up to ``max_events`` of them (oldest first) get a new
``WebhookBatch`` row and their place in it, in one transaction. Only then is the batch claimed
and turned into one flow run with ``events=[...]`` and the batch id as Prefect's idempotency
key, so a dispatcher killed at any point creates no second run, and every delivery belongs to
exactly one batch.

The run carries the tag ``batch:<id>`` and records each event's outcome with
:func:`record_outcomes` (called by ``flows.batch``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from agency.db import Activation, WebhookBatch, WebhookDelivery, WebhookEndpoint, utcnow

MAX_EVENTS_LIMIT = 1000
#: events per batch run of an adaptive endpoint that sets no ``batch_max_events``
DEFAULT_BATCH_EVENTS = 100
#: ... and how long its first event waits for the batch to fill: a burst makes few full runs
DEFAULT_BATCH_WAIT_S = 1.0
MAX_WAIT_LIMIT_S = 3600.0


@dataclass(frozen=True)
class ClaimedBatch:
    """A formed batch claimed by one dispatcher: its events in order."""

    id: str
    client: str
    workflow: str
    deployment_id: str | None
    delivery_ids: list[str]
    payloads: list[dict[str, Any]]
    attempts: int
    first_received_at: datetime


class BatchConflict(RuntimeError):
    """Another dispatcher grouped some of the same deliveries first; this transaction is void."""


def _locking(session: Session, query: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=WebhookDelivery)
    return query


def form_batches(session: Session, limit: int = 50) -> int:
    """Group due ungrouped deliveries into batches; return how many batches were formed.

    Raises ``BatchConflict`` (the caller rolls back) when another dispatcher grouped one of
    the rows in the meantime; on PostgreSQL ``SKIP LOCKED`` keeps that from happening.
    """
    now = utcnow()
    waiting = session.execute(
        select(
            WebhookDelivery.activation_id,
            func.count(),
            func.min(WebhookDelivery.received_at),
            WebhookEndpoint.batch_max_events,
            WebhookEndpoint.batch_max_wait_s,
            WebhookEndpoint.batch_mode,
        )
        .join(WebhookEndpoint, WebhookEndpoint.activation_id == WebhookDelivery.activation_id)
        .where(
            WebhookDelivery.batched.is_(True),
            WebhookDelivery.batch_id.is_(None),
            WebhookDelivery.status == "pending",
        )
        .group_by(
            WebhookDelivery.activation_id,
            WebhookEndpoint.batch_max_events,
            WebhookEndpoint.batch_max_wait_s,
            WebhookEndpoint.batch_mode,
        )
    ).all()
    formed = 0
    for activation_id, count, oldest, max_events, max_wait_s, mode in waiting:
        if mode == "adaptive":  # batched because the activation fell behind
            max_events = max_events or DEFAULT_BATCH_EVENTS
            max_wait_s = max_wait_s or DEFAULT_BATCH_WAIT_S
        # an endpoint switched back to single runs still drains what it accepted as batches
        size = max(1, min(max_events or 1, MAX_EVENTS_LIMIT))
        wait = timedelta(seconds=max_wait_s or 0.0)
        while count >= size or (count > 0 and oldest <= now - wait):
            if formed >= limit:
                return formed
            members = session.execute(
                _locking(
                    session,
                    select(WebhookDelivery.id, WebhookDelivery.client, WebhookDelivery.workflow)
                    .where(
                        WebhookDelivery.activation_id == activation_id,
                        WebhookDelivery.batched.is_(True),
                        WebhookDelivery.batch_id.is_(None),
                        WebhookDelivery.status == "pending",
                    )
                    .order_by(WebhookDelivery.received_at, WebhookDelivery.id)
                    .limit(size),
                )
            ).all()
            if not members:
                break
            batch_id = str(uuid.uuid4())
            session.add(
                WebhookBatch(
                    id=batch_id,
                    activation_id=activation_id,
                    client=members[0].client,
                    workflow=members[0].workflow,
                    size=len(members),
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            session.flush()
            # one statement for the whole batch: one per member (up to 1,000) kept SQLite's
            # write lock, and so every webhook being accepted, waiting for up to a second
            places = {m.id: index for index, m in enumerate(members)}
            place = case(places, value=WebhookDelivery.id)
            changed = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(list(places)), WebhookDelivery.batch_id.is_(None))
                .values(batch_id=batch_id, batch_index=place)
                .execution_options(synchronize_session=False)
            ).rowcount
            if changed != len(members):
                raise BatchConflict("some deliveries were grouped by another dispatcher")
            formed += 1
            count -= len(members)
            oldest = now  # the rest waited less than the oldest; re-checked next cycle
    return formed


def claim_due_batches(session: Session, limit: int, lease_seconds: float) -> list[ClaimedBatch]:
    """Claim up to ``limit`` due pending batches for ``lease_seconds``, oldest first."""
    now = utcnow()
    query = (
        select(WebhookBatch, Activation.deployment_id)
        .join(Activation, Activation.id == WebhookBatch.activation_id)
        .where(WebhookBatch.status == "pending", WebhookBatch.next_attempt_at <= now)
        .order_by(WebhookBatch.next_attempt_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=WebhookBatch)
    claimed = []
    for batch, deployment_id in session.execute(query).all():
        batch.next_attempt_at = now + timedelta(seconds=lease_seconds)
        members = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.payload, WebhookDelivery.received_at)
            .where(WebhookDelivery.batch_id == batch.id)
            .order_by(WebhookDelivery.batch_index)
        ).all()
        claimed.append(
            ClaimedBatch(
                batch.id,
                batch.client,
                batch.workflow,
                deployment_id,
                [m.id for m in members],
                [dict(m.payload) for m in members],
                batch.attempts,
                min((m.received_at for m in members), default=batch.created_at),
            )
        )
    return claimed


def mark_batch_dispatched(session: Session, batch_id: str, flow_run_id: str) -> None:
    """Record the run a batch became, on the batch and on each of its deliveries."""
    now = utcnow()
    session.execute(
        update(WebhookBatch)
        .where(WebhookBatch.id == batch_id)
        .values(status="dispatched", flow_run_id=flow_run_id, dispatched_at=now)
    )
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.batch_id == batch_id)
        .values(status="dispatched", flow_run_id=flow_run_id, dispatched_at=now)
    )


def mark_batch_retry(
    session: Session, batch_id: str, attempts: int, delay_seconds: float, error: str
) -> None:
    """Leave the batch pending and due again after ``delay_seconds``."""
    session.execute(
        update(WebhookBatch)
        .where(WebhookBatch.id == batch_id, WebhookBatch.status == "pending")
        .values(
            attempts=attempts,
            next_attempt_at=utcnow() + timedelta(seconds=delay_seconds),
            last_error=error[:500],
        )
    )


def mark_batch_failed(session: Session, batch_id: str, attempts: int, error: str) -> None:
    """Give up on a batch Prefect refuses for good; each delivery is failed with the reason."""
    session.execute(
        update(WebhookBatch)
        .where(WebhookBatch.id == batch_id, WebhookBatch.status == "pending")
        .values(status="failed", attempts=attempts, last_error=error[:500])
    )
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.batch_id == batch_id, WebhookDelivery.status == "pending")
        .values(
            status="failed", last_error=error[:500], outcome="failed", outcome_error=error[:500]
        )
    )
