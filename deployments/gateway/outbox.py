"""The delivery outbox: accepted requests are rows here before the 202 goes out.

Dispatchers claim due rows with a short lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several dispatchers take disjoint rows) and turn each into one flow run. A lease that runs out
(a dispatcher killed mid-batch) makes the row due again; Prefect's idempotency key, the delivery
id, makes the second attempt return the first run instead of creating another.
"""

from __future__ import annotations

import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agency.db import (
    Activation,
    Client,
    WebhookDelivery,
    WebhookEndpoint,
    session_scope,
    utcnow,
)

DEDUPE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Target:
    """What the gateway needs to know about ``/hooks/<client>/<workflow>``."""

    client: str
    workflow: str
    activation_id: int
    activation_active: bool
    accepting: bool
    verifier: str | None
    rate_limit_per_hour: int | None
    batched: bool = False


@dataclass(frozen=True)
class Claimed:
    """A due delivery claimed by one dispatcher."""

    id: str
    client: str
    workflow: str
    deployment_id: str | None
    payload: dict[str, Any]
    attempts: int
    received_at: datetime


def find_target(session: Session, client: str, workflow: str) -> Target | None:
    """The activation behind the URL, or ``None`` when there is no such client or activation."""
    row = session.execute(
        select(Activation, WebhookEndpoint)
        .join(Client, Client.id == Activation.client_id)
        .outerjoin(WebhookEndpoint, WebhookEndpoint.activation_id == Activation.id)
        .where(Client.slug == client, Activation.workflow == workflow)
    ).first()
    if row is None:
        return None
    act, endpoint = row
    return Target(
        client=client,
        workflow=workflow,
        activation_id=act.id,
        activation_active=act.status == "active",
        accepting=act.status == "active" and endpoint is not None and endpoint.active,
        verifier=endpoint.verifier if endpoint is not None else None,
        rate_limit_per_hour=endpoint.rate_limit_per_hour if endpoint is not None else None,
        batched=endpoint is not None and endpoint.batch_max_events is not None,
    )


def find_duplicate(session: Session, activation_id: int, dedupe_key: str) -> str | None:
    """The delivery id first accepted with ``dedupe_key`` within 24 h, else ``None``."""
    row = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.received_at).where(
            WebhookDelivery.activation_id == activation_id,
            WebhookDelivery.dedupe_key == dedupe_key,
        )
    ).first()
    if row is None:
        return None
    if row.received_at < utcnow() - DEDUPE_WINDOW:
        # outside the window the key is free again; NULL keys never collide
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(dedupe_key=None)
        )
        return None
    return str(row.id)


def accept(
    session: Session,
    target: Target,
    payload: dict[str, Any],
    dedupe_key: str | None,
    *,
    source: str = "webhook",
) -> tuple[str, bool]:
    """Persist a delivery and return ``(delivery_id, created)``.

    ``created`` is False when ``dedupe_key`` was already accepted within 24 h; the first
    delivery's id is returned then. The caller's session commits.
    """
    if dedupe_key is not None:
        first = find_duplicate(session, target.activation_id, dedupe_key)
        if first is not None:
            return first, False
    delivery_id = str(uuid.uuid4())
    try:
        with session.begin_nested():
            session.add(
                WebhookDelivery(
                    id=delivery_id,
                    activation_id=target.activation_id,
                    client=target.client,
                    workflow=target.workflow,
                    source=source,
                    dedupe_key=dedupe_key,
                    payload=payload,
                    batched=target.batched,
                )
            )
    except IntegrityError:
        # a concurrent request with the same sender id won the insert
        if dedupe_key is not None:
            first = find_duplicate(session, target.activation_id, dedupe_key)
            if first is not None:
                return first, False
        raise
    return delivery_id, True


def accept_many(
    session: Session, items: list[tuple[Target, dict[str, Any], str | None, str]]
) -> list[tuple[str, bool]]:
    """:func:`accept` for a batch with one dedupe query and no savepoints.

    A unique-key race with another process raises ``IntegrityError`` at flush; callers then
    fall back to :func:`accept` one by one.
    """
    wanted = {(t.activation_id, k) for t, _, k, _ in items if k is not None}
    seen: dict[tuple[int, str], tuple[str, datetime]] = {}
    if wanted:
        rows = session.execute(
            select(
                WebhookDelivery.activation_id,
                WebhookDelivery.dedupe_key,
                WebhookDelivery.id,
                WebhookDelivery.received_at,
            ).where(WebhookDelivery.dedupe_key.in_({k for _, k in wanted}))
        ).all()
        seen = {
            (r.activation_id, r.dedupe_key): (r.id, r.received_at)
            for r in rows
            if (r.activation_id, r.dedupe_key) in wanted
        }
    now = utcnow()
    results: list[tuple[str, bool]] = []
    for target, payload, key, source in items:
        slot = (target.activation_id, key) if key is not None else None
        if slot is not None and slot in seen:
            first, at = seen[slot]
            if at >= now - DEDUPE_WINDOW:
                results.append((first, False))
                continue
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == first).values(dedupe_key=None)
            )
        delivery_id = str(uuid.uuid4())
        session.add(
            WebhookDelivery(
                id=delivery_id,
                activation_id=target.activation_id,
                client=target.client,
                workflow=target.workflow,
                source=source,
                dedupe_key=key,
                payload=payload,
                received_at=now,
                next_attempt_at=now,
                batched=target.batched,
            )
        )
        if slot is not None:
            seen[slot] = (delivery_id, now)
        results.append((delivery_id, True))
    session.flush()
    return results


def claim_due(session: Session, limit: int, lease_seconds: float) -> list[Claimed]:
    """Claim up to ``limit`` due pending deliveries for ``lease_seconds``, oldest first."""
    now = utcnow()
    query = (
        select(WebhookDelivery, Activation.deployment_id)
        .join(Activation, Activation.id == WebhookDelivery.activation_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            WebhookDelivery.batched.is_(False),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    claimed = []
    for delivery, deployment_id in session.execute(query).all():
        delivery.next_attempt_at = now + timedelta(seconds=lease_seconds)
        claimed.append(
            Claimed(
                delivery.id,
                delivery.client,
                delivery.workflow,
                deployment_id,
                dict(delivery.payload),
                delivery.attempts,
                delivery.received_at,
            )
        )
    return claimed


def mark_dispatched(session: Session, delivery_id: str, flow_run_id: str) -> None:
    """Record the flow run a delivery became."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(status="dispatched", flow_run_id=flow_run_id, dispatched_at=utcnow())
    )


def mark_retry(
    session: Session, delivery_id: str, attempts: int, delay_seconds: float, error: str
) -> None:
    """Leave the delivery pending and due again after ``delay_seconds``."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
        .values(
            attempts=attempts,
            next_attempt_at=utcnow() + timedelta(seconds=delay_seconds),
            last_error=error[:500],
        )
    )


def mark_failed(session: Session, delivery_id: str, attempts: int, error: str) -> None:
    """Give up on a delivery Prefect refuses for good (e.g. its deployment is gone)."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
        .values(status="failed", attempts=attempts, last_error=error[:500])
    )


def pending_count(session: Session) -> int:
    """Deliveries not yet turned into a run."""
    from sqlalchemy import func

    return int(
        session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
        )
        or 0
    )


class GroupCommitter:
    """Persists deliveries of concurrent requests in one transaction (one fsync for many).

    ``submit`` returns a future that resolves once the delivery is committed, so the caller
    still answers 202 only after the row is durable. One writer thread also means SQLite never makes
    requests wait on its file lock.
    """

    def __init__(self, database_url: str, max_batch: int = 200) -> None:
        self.database_url = database_url
        self.max_batch = max_batch
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(
        self, target: Target, payload: dict[str, Any], dedupe_key: str | None, source: str
    ) -> Future[tuple[str, bool]]:
        """Queue a delivery; the future gives ``(delivery_id, created)`` once committed."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="outbox")
                self._thread.start()
        done: Future[tuple[str, bool]] = Future()
        self._queue.put(_Item(target, payload, dedupe_key, source, done))
        return done

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with session_scope(self.database_url) as session:
                    results = accept_many(
                        session, [(i.target, i.payload, i.dedupe_key, i.source) for i in batch]
                    )
            except Exception:  # noqa: BLE001 - retry one by one so one bad row fails alone
                for item in batch:
                    try:
                        with session_scope(self.database_url) as session:
                            result = accept(
                                session,
                                item.target,
                                item.payload,
                                item.dedupe_key,
                                source=item.source,
                            )
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        item.done.set_exception(exc)
                    else:
                        item.done.set_result(result)
                continue
            for item, result in zip(batch, results, strict=True):
                item.done.set_result(result)


@dataclass
class _Item:
    target: Target
    payload: dict[str, Any]
    dedupe_key: str | None
    source: str
    done: Future[tuple[str, bool]]
