"""The outbox on SQLite and PostgreSQL: batch accept dedupes within a batch and within 24 h,
frees keys after the window, enforces the activation's hourly budget from the rows of the last
hour (repeats answered first, never charged), and claims hand each due row to one dispatcher
until its lease runs out. On PostgreSQL a second transaction waits for the first one's budget."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from agency.db import Activation, Client, WebhookDelivery, session_scope, utcnow
from deployments.webhooks.outbox import (
    Accepted,
    RateLimited,
    Result,
    Submission,
    Target,
    accept,
    accept_many,
    claim_due,
)

UNLIMITED = 10**6


def _target(url: str, slug: str = "acme") -> Target:
    with session_scope(url) as session:
        client = Client(slug=slug, name=slug.title())
        session.add(client)
        session.flush()
        act = Activation(client_id=client.id, workflow="echo", version=1)
        session.add(act)
        session.flush()
        return Target(slug, "echo", act.id, True, True, "standard", None)


def _item(target: Target, key: str | None, limit: int = UNLIMITED, n: int = 0) -> Submission:
    return Submission(target, {"n": n}, key, "webhook", limit)


def _accepted(results: list[Result]) -> list[Accepted]:
    assert all(isinstance(r, Accepted) for r in results), results
    return [r for r in results if isinstance(r, Accepted)]


def _age(url: str, delivery_id: str, age: timedelta) -> None:
    with session_scope(url) as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(received_at=utcnow() - age)
        )


def _rows(url: str) -> int:
    with session_scope(url) as session:
        return len(session.scalars(select(WebhookDelivery.id)).all())


def test_batch_accept_dedupes_and_claims_lease(migrated_db_url: str) -> None:
    target = _target(migrated_db_url)
    items = [_item(target, key, n=i) for i, key in enumerate(["a", "b", "a", None])]
    with session_scope(migrated_db_url) as session:
        results = _accepted(accept_many(session, items))
    assert [r.created for r in results] == [True, True, False, True]
    assert results[2] == (results[0].delivery_id, False)
    with session_scope(migrated_db_url) as session:
        again = accept_many(session, [_item(target, "b")])
        assert again == [(results[1].delivery_id, False)]
        # outside the 24 h window the key is free again
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == results[1].delivery_id)
            .values(received_at=utcnow() - timedelta(hours=25))
        )
        [fresh] = _accepted(accept_many(session, [_item(target, "b")]))
        assert fresh.created and fresh.delivery_id != results[1].delivery_id
        assert accept(session, _item(target, "b")) == (fresh.delivery_id, False)

    with session_scope(migrated_db_url) as session:
        first = claim_due(session, 10, lease_seconds=60)
    assert len(first) == 4
    with session_scope(migrated_db_url) as session:
        assert claim_due(session, 10, lease_seconds=60) == []  # leased to the first claimer
        session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    with session_scope(migrated_db_url) as session:
        assert len(claim_due(session, 10, lease_seconds=60)) == 4  # lease ran out: due again


def test_batch_admits_in_order_up_to_the_budget(migrated_db_url: str) -> None:
    target, other = _target(migrated_db_url), _target(migrated_db_url, "globex")
    items = [_item(target, f"k{i}", limit=3, n=i) for i in range(5)]
    items.insert(2, _item(target, "k0", limit=3))  # a repeat inside the batch: free
    items.append(_item(other, "k0", limit=3))  # another activation has its own budget
    with session_scope(migrated_db_url) as session:
        results = accept_many(session, items)
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Accepted"] * 4 + ["RateLimited"] * 2 + ["Accepted"]
    first, second, repeated = _accepted(results[:3])
    assert repeated == (first.delivery_id, False)
    for limited in results[4:6]:
        assert isinstance(limited, RateLimited) and limited.limit == 3
        assert 3590 < limited.retry_after <= 3600  # the oldest was received just now
    assert _rows(migrated_db_url) == 4

    # the next transaction counts the rows: still full, but a repeat still gets its first id
    with session_scope(migrated_db_url) as session:
        over, repeat = accept_many(session, [_item(target, "k9", 3), _item(target, "k1", 3)])
        single = accept(session, _item(target, "k8", 3))
    assert isinstance(over, RateLimited) and isinstance(single, RateLimited)
    assert repeat == (second.delivery_id, False)
    assert _rows(migrated_db_url) == 4


def test_retry_after_is_when_the_window_has_room_again(migrated_db_url: str) -> None:
    target = _target(migrated_db_url)
    with session_scope(migrated_db_url) as session:
        added = _accepted(accept_many(session, [_item(target, None) for _ in range(3)]))
    ids = [a.delivery_id for a in added]
    for delivery_id, minutes in zip(ids, (50, 40, 30), strict=True):
        _age(migrated_db_url, delivery_id, timedelta(minutes=minutes))

    with session_scope(migrated_db_url) as session:
        [limited] = accept_many(session, [_item(target, None, limit=3)])
        # lowered to 2: two of the three must leave, the one received 40 minutes ago last
        lowered = accept(session, _item(target, None, limit=2))
    assert isinstance(limited, RateLimited) and 590 <= limited.retry_after <= 600
    assert isinstance(lowered, RateLimited) and 1190 <= lowered.retry_after <= 1200

    _age(migrated_db_url, ids[0], timedelta(minutes=61))  # out of the window: a unit is free
    with session_scope(migrated_db_url) as session:
        admitted, limited = accept_many(session, [_item(target, None, 3), _item(target, None, 3)])
    assert isinstance(admitted, Accepted) and admitted.created
    assert isinstance(limited, RateLimited) and 1190 <= limited.retry_after <= 1200
    assert _rows(migrated_db_url) == 4


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_serializes_budgets_across_transactions(migrated_db_url: str) -> None:
    """A second transaction counts only after the first commits, so it cannot take the last
    unit too (two gateway replicas each counting 1 of 2 would both insert)."""
    target = _target(migrated_db_url)
    with session_scope(migrated_db_url) as session:
        accept_many(session, [_item(target, "a", limit=2)])
    outcome: list[object] = []
    with session_scope(migrated_db_url) as first:
        [mine] = accept_many(first, [_item(target, "b", limit=2)])
        other = threading.Thread(
            target=lambda: outcome.append(_accept_alone(migrated_db_url, target))
        )
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive()  # waiting for the first transaction's budget lock
    other.join(timeout=30)
    assert isinstance(mine, Accepted) and mine.created
    assert len(outcome) == 1 and isinstance(outcome[0], RateLimited)
    assert _rows(migrated_db_url) == 2


def _accept_alone(url: str, target: Target) -> object:
    with session_scope(url) as session:
        return accept_many(session, [_item(target, "c", limit=2)])[0]
