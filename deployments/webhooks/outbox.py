"""The delivery outbox: accepted requests are rows here before the 202 goes out.

The activation's hourly budget is enforced in the transaction that writes the rows, counting the
activation's rows of the last hour, so every gateway replica (and a restarted one) shares one
budget; on PostgreSQL an advisory lock per activation keeps two replicas from both taking the
last unit.

Dispatchers claim due rows with a short lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several dispatchers take disjoint rows) and turn each into one flow run. A lease that runs out
(a dispatcher killed mid-batch) makes the row due again; Prefect's idempotency key, the delivery
id, makes the second attempt return the first run instead of creating another.
"""

from __future__ import annotations

import math
import queue
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, select, text, update
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
RATE_WINDOW = timedelta(hours=1)
# first key of the two-key advisory lock taken per activation while its budget is counted
_BUDGET_LOCK = 0x7261746C  # "ratl"


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
    batched: bool | None = False  # None: adaptive, decided by the dispatcher
    client_active: bool = True


@dataclass(frozen=True)
class Submission:
    """One request's event for the outbox; ``limit`` is its activation's runs per hour."""

    target: Target
    payload: dict[str, Any]
    dedupe_key: str | None
    source: str
    limit: int


class Accepted(NamedTuple):
    """``delivery_id`` was written now (``created``) or first, for the same sender key."""

    delivery_id: str
    created: bool


@dataclass(frozen=True)
class RateLimited:
    """Over the activation's hourly budget: nothing was written.

    A unit frees up in ``retry_after`` seconds (at least 1), when the delivery that keeps the
    window full leaves it.
    """

    limit: int
    retry_after: int


Result = Accepted | RateLimited


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
        select(Activation, WebhookEndpoint, Client.status)
        .join(Client, Client.id == Activation.client_id)
        .outerjoin(WebhookEndpoint, WebhookEndpoint.activation_id == Activation.id)
        .where(Client.slug == client, Activation.workflow == workflow)
    ).first()
    if row is None:
        return None
    act, endpoint, client_status = row
    return Target(
        client=client,
        workflow=workflow,
        activation_id=act.id,
        activation_active=act.status == "active",
        accepting=act.status == "active" and endpoint is not None and endpoint.active,
        verifier=endpoint.verifier if endpoint is not None else None,
        rate_limit_per_hour=endpoint.rate_limit_per_hour if endpoint is not None else None,
        batched=_batched(endpoint),
        client_active=client_status == "active",
    )


def _batched(endpoint: WebhookEndpoint | None) -> bool | None:
    """How a new delivery starts: single, batched, or undecided (adaptive)."""
    mode = endpoint.batch_mode if endpoint is not None else "off"
    return True if mode == "always" else None if mode == "adaptive" else False


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


def lock_budgets(session: Session, activation_ids: Iterable[int]) -> None:
    """Hold each activation's budget until the transaction ends (PostgreSQL).

    Takes ``pg_advisory_xact_lock(_BUDGET_LOCK, <activation id>)`` in ascending id order, so two
    replicas' batches wait for each other instead of both counting 99 and both inserting, and
    never deadlock. SQLite lets one transaction write at a time, which serves the one gateway
    process a SQLite platform supports.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for activation_id in sorted(set(activation_ids)):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :id)"),
            {"space": _BUDGET_LOCK, "id": activation_id},
        )


def used_budget(session: Session, activation_id: int, now: datetime, cap: int) -> int:
    """Deliveries of the activation received in the hour before ``now``, counted up to ``cap``."""
    recent = (
        select(WebhookDelivery.received_at)
        .where(
            WebhookDelivery.activation_id == activation_id,
            WebhookDelivery.received_at > now - RATE_WINDOW,
        )
        .limit(cap)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(recent)) or 0)


def retry_after(session: Session, activation_id: int, now: datetime, rank: int) -> int:
    """Seconds (at least 1) until the ``rank``-th newest delivery of the window leaves it."""
    window = int(RATE_WINDOW.total_seconds())
    if rank < 1:
        return window
    at = session.scalar(
        select(WebhookDelivery.received_at)
        .where(
            WebhookDelivery.activation_id == activation_id,
            WebhookDelivery.received_at > now - RATE_WINDOW,
        )
        .order_by(WebhookDelivery.received_at.desc())
        .offset(rank - 1)
        .limit(1)
    )
    if at is None:
        return window
    return max(1, math.ceil((at + RATE_WINDOW - now).total_seconds()))


class _Budgets:
    """The budgets of one transaction's activations: counted once each, then kept up to date.

    Call :func:`lock_budgets` for the same activations first.
    """

    def __init__(self, session: Session, items: Iterable[Submission], now: datetime) -> None:
        self.session, self.now = session, now
        self.caps: dict[int, int] = {}
        for item in items:
            key = item.target.activation_id
            self.caps[key] = max(self.caps.get(key, 0), item.limit)
        self.used: dict[int, int] = {}
        self._waits: dict[tuple[int, int], int] = {}

    def take(self, item: Submission) -> RateLimited | None:
        """Use one unit for ``item``, or say when one frees up."""
        key = item.target.activation_id
        if key not in self.used:
            self.used[key] = used_budget(self.session, key, self.now, self.caps[key])
        if self.used[key] < item.limit:
            self.used[key] += 1
            return None
        wait = self._waits.get((key, item.limit))
        if wait is None:
            # rows added by this transaction count too: the window is full until the
            # limit-th newest of them all leaves it
            self.session.flush()
            wait = retry_after(self.session, key, self.now, item.limit)
            self._waits[key, item.limit] = wait
        return RateLimited(item.limit, wait)


def _delivery(item: Submission, delivery_id: str, now: datetime) -> WebhookDelivery:
    return WebhookDelivery(
        id=delivery_id,
        activation_id=item.target.activation_id,
        client=item.target.client,
        workflow=item.target.workflow,
        source=item.source,
        dedupe_key=item.dedupe_key,
        payload=item.payload,
        received_at=now,
        next_attempt_at=now,
        batched=item.target.batched,
    )


def accept(session: Session, item: Submission) -> Result:
    """Persist one delivery unless it repeats a sender key or is over budget.

    A repeat of a key accepted within 24 h gives the first delivery's id (not created) whatever
    the budget; over the budget nothing is written. The caller's session commits, which also
    releases the budget lock.
    """
    activation_id, key = item.target.activation_id, item.dedupe_key
    lock_budgets(session, [activation_id])
    if key is not None:
        first = find_duplicate(session, activation_id, key)
        if first is not None:
            return Accepted(first, False)
    now = utcnow()
    over = _Budgets(session, [item], now).take(item)
    if over is not None:
        return over
    delivery_id = str(uuid.uuid4())
    try:
        with session.begin_nested():
            session.add(_delivery(item, delivery_id, now))
    except IntegrityError:
        # a concurrent request with the same sender id won the insert
        if key is not None:
            first = find_duplicate(session, activation_id, key)
            if first is not None:
                return Accepted(first, False)
        raise
    return Accepted(delivery_id, True)


def accept_many(session: Session, items: list[Submission]) -> list[Result]:
    """:func:`accept` for a batch, in order: one dedupe query, one count per activation, no
    savepoints.

    A unique-key race with another process raises ``IntegrityError`` at flush; callers then
    fall back to :func:`accept` one by one.
    """
    lock_budgets(session, (i.target.activation_id for i in items))
    wanted = {(i.target.activation_id, i.dedupe_key) for i in items if i.dedupe_key is not None}
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
    budgets = _Budgets(session, items, now)
    results: list[Result] = []
    for item in items:
        key = item.dedupe_key
        slot = (item.target.activation_id, key) if key is not None else None
        stale = None
        if slot is not None and slot in seen:
            first, at = seen[slot]
            if at >= now - DEDUPE_WINDOW:
                results.append(Accepted(first, False))
                continue
            stale = first
        over = budgets.take(item)
        if over is not None:
            results.append(over)
            continue
        if stale is not None:
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == stale).values(dedupe_key=None)
            )
        delivery_id = str(uuid.uuid4())
        session.add(_delivery(item, delivery_id, now))
        if slot is not None:
            seen[slot] = (delivery_id, now)
        results.append(Accepted(delivery_id, True))
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

    ``submit`` returns a future that resolves once the delivery is committed (or found over
    budget, or a repeat), so the caller still answers 202 only after the row is durable. One
    writer thread also means SQLite never makes requests wait on its file lock.
    """

    def __init__(self, database_url: str, max_batch: int = 200) -> None:
        self.database_url = database_url
        self.max_batch = max_batch
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, item: Submission) -> Future[Result]:
        """Queue a delivery; the future gives its :data:`Result` once committed."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="outbox")
                self._thread.start()
        done: Future[Result] = Future()
        self._queue.put(_Item(item, done))
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
                    results = accept_many(session, [i.submission for i in batch])
            except Exception:  # noqa: BLE001 - retry one by one so one bad row fails alone
                for item in batch:
                    try:
                        with session_scope(self.database_url) as session:
                            result = accept(session, item.submission)
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        item.done.set_exception(exc)
                    else:
                        item.done.set_result(result)
                continue
            for item, result in zip(batch, results, strict=True):
                item.done.set_result(result)


@dataclass
class _Item:
    submission: Submission
    done: Future[Result]
