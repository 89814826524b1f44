"""Per-event outcomes of a batch run, written by the flow that handled the batch.

A batch trigger's run carries the tag ``batch:<id>``; the flow stores done / failed (with the
error) against each event's delivery here (``flows.batch.record_outcomes``).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from agency.db.models import WebhookDelivery
from agency.redaction import redact

BATCH_TAG_PREFIX = "batch:"


def record_outcomes(session: Session, batch_id: str, outcomes: list[str | None]) -> int:
    """Store each event's outcome in batch ``batch_id``: ``None`` for done, else the error.

    ``outcomes[i]`` belongs to ``events[i]`` of the batch's run. Returns how many were stored.
    Errors are stored with every secret this process loaded masked: the client API shows them.
    """
    stored = 0
    for index, error in enumerate(outcomes):
        stored += session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.batch_id == batch_id, WebhookDelivery.batch_index == index)
            .values(
                outcome="done" if error is None else "failed",
                outcome_error=None if error is None else redact(error)[:500],
            )
        ).rowcount
    return stored
