"""Adaptive batching: one run per event while an activation keeps up, batches while it doesn't.

An endpoint in ``adaptive`` mode accepts deliveries *undecided* (``batched`` is NULL). Before
each claim the dispatcher calls :func:`decide`, which settles every undecided delivery, under
row locks, in one of two ways:

- single (``batched`` false): the activation keeps up; the delivery is claimed at once and
  becomes its own run, exactly as in ``off`` mode, so a lone event waits for nothing;
- batched (``batched`` true): the activation fell behind; :func:`~.batches.form_batches` groups
  such deliveries into runs of up to ``batch_max_events`` (100) events, as soon as that many
  wait or the oldest has waited ``batch_max_wait_s`` (1 s), so a burst makes few full runs.

An activation has fallen behind when its *load* (undecided deliveries plus the events that went
single in the last :data:`INFLIGHT_WINDOW`) is above ``adaptive_inflight``, or when its oldest
undecided delivery is older than ``adaptive_age_s``. When the backlog is gone and the window has
passed, new deliveries go single again.

A delivery is decided once and only by this step, and only a single one is ever claimed as a
single run, so each delivery ends in exactly one run whatever dispatcher is killed when.
Deliveries left undecided by an endpoint switched to ``off`` or ``always`` are decided by that
mode.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from agency.db import WebhookDelivery, WebhookEndpoint, utcnow

DEFAULT_INFLIGHT = 10
DEFAULT_AGE_S = 3.0
INFLIGHT_WINDOW = timedelta(seconds=20)


def _undecided(session: Session) -> list[tuple[int, int, object, str, int | None, float | None]]:
    """Per activation with undecided deliveries: count, oldest, mode and thresholds."""
    return [
        tuple(row)  # type: ignore[misc]
        for row in session.execute(
            select(
                WebhookDelivery.activation_id,
                func.count(),
                func.min(WebhookDelivery.received_at),
                WebhookEndpoint.batch_mode,
                WebhookEndpoint.adaptive_inflight,
                WebhookEndpoint.adaptive_age_s,
            )
            .join(WebhookEndpoint, WebhookEndpoint.activation_id == WebhookDelivery.activation_id)
            .where(WebhookDelivery.batched.is_(None), WebhookDelivery.status == "pending")
            .group_by(
                WebhookDelivery.activation_id,
                WebhookEndpoint.batch_mode,
                WebhookEndpoint.adaptive_inflight,
                WebhookEndpoint.adaptive_age_s,
            )
        ).all()
    ]


def decide(session: Session) -> tuple[int, int]:
    """Settle every undecided delivery as single or batched; return how many of each."""
    waiting = _undecided(session)
    if not waiting:
        return 0, 0
    now = utcnow()
    single = dict(
        session.execute(
            select(WebhookDelivery.activation_id, func.count())
            .where(
                WebhookDelivery.activation_id.in_([w[0] for w in waiting]),
                WebhookDelivery.batched.is_(False),
                WebhookDelivery.received_at >= now - INFLIGHT_WINDOW,
            )
            .group_by(WebhookDelivery.activation_id)
        ).all()
    )
    counts = [0, 0]
    for activation_id, count, oldest, mode, inflight, age_s in waiting:
        if mode == "adaptive":
            load = count + single.get(activation_id, 0)
            age = timedelta(seconds=age_s or DEFAULT_AGE_S)
            batched = load > (inflight or DEFAULT_INFLIGHT) or oldest <= now - age  # type: ignore[operator]
        else:
            batched = mode == "always"
        query = select(WebhookDelivery.id).where(
            WebhookDelivery.activation_id == activation_id,
            WebhookDelivery.batched.is_(None),
            WebhookDelivery.status == "pending",
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)  # another dispatcher is on them
        ids = list(session.scalars(query))
        if ids:
            counts[batched] += session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids), WebhookDelivery.batched.is_(None))
                .values(batched=batched)
                .execution_options(synchronize_session=False)
            ).rowcount
    return counts[0], counts[1]
