"""Per-event outcomes of a batch run, written by the flow that handled the batch.

A batch trigger's run carries the tag ``batch:<id>``; the flow stores done / failed (with the
error) against each event's delivery here (``flows.batch.record_outcomes``). A run that ended
without doing so (its process was killed, it failed before the end) has its events failed with
the reason by the dispatcher (:mod:`deployments.settlement`), through :func:`unsettled_batches`
and :func:`fail_unrecorded`.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, case, exists, or_, select, update
from sqlalchemy.orm import Session

from agency.db.models import WebhookBatch, WebhookDelivery
from agency.redaction import redact

BATCH_TAG_PREFIX = "batch:"


def record_outcomes(session: Session, batch_id: str, outcomes: list[str | None]) -> int:
    """Store each event's outcome in batch ``batch_id``: ``None`` for done, else the error.

    ``outcomes[i]`` belongs to ``events[i]`` of the batch's run. Returns how many were stored.
    Errors are stored with every secret this process loaded masked: the client API shows them.
    """
    if not outcomes:
        return 0
    # one statement: one per event held the platform DB's write lock (on SQLite, every webhook
    # being accepted waits for it) through the whole loop
    index = WebhookDelivery.batch_index
    states = {i: "done" if e is None else "failed" for i, e in enumerate(outcomes)}
    errors = {i: redact(e)[:500] for i, e in enumerate(outcomes) if e is not None}
    return session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.batch_id == batch_id, index.in_(list(states)))
        .values(
            outcome=case(states, value=index),
            outcome_error=case(errors, value=index, else_=None) if errors else None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount


class DispatchedBatch(NamedTuple):
    id: str
    flow_run_id: str
    dispatched_at: datetime


def unsettled_batches(
    session: Session,
    dispatched_before: datetime,
    limit: int,
    after: DispatchedBatch | None = None,
) -> list[DispatchedBatch]:
    """Batches dispatched before ``dispatched_before`` with an event whose outcome is not
    recorded, oldest first; ``after``: the last batch of the previous page."""
    unrecorded = exists().where(
        WebhookDelivery.batch_id == WebhookBatch.id, WebhookDelivery.outcome.is_(None)
    )
    query = select(WebhookBatch.id, WebhookBatch.flow_run_id, WebhookBatch.dispatched_at).where(
        WebhookBatch.status == "dispatched",
        WebhookBatch.flow_run_id.is_not(None),
        WebhookBatch.dispatched_at < dispatched_before,
        unrecorded,
    )
    if after is not None:
        query = query.where(
            or_(
                WebhookBatch.dispatched_at > after.dispatched_at,
                and_(WebhookBatch.dispatched_at == after.dispatched_at, WebhookBatch.id > after.id),
            )
        )
    rows = session.execute(
        query.order_by(WebhookBatch.dispatched_at, WebhookBatch.id).limit(limit)
    ).all()
    return [DispatchedBatch(*row) for row in rows]


def fail_unrecorded(session: Session, batch_id: str, error: str) -> int:
    """Fail with ``error`` every event of the batch whose outcome is not recorded; the outcomes
    the run did record stay. Returns how many events were failed."""
    return session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.batch_id == batch_id, WebhookDelivery.outcome.is_(None))
        .values(outcome="failed", outcome_error=redact(error)[:500])
    ).rowcount
