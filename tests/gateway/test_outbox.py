"""The outbox on SQLite and PostgreSQL: batch accept dedupes within a batch and within 24 h,
frees keys after the window, and claims hand each due row to one dispatcher until its lease
runs out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from agency.db import Activation, Client, WebhookDelivery, session_scope, utcnow
from deployments.gateway.outbox import Target, accept, accept_many, claim_due


def _target(url: str) -> Target:
    with session_scope(url) as session:
        client = Client(slug="acme", name="Acme")
        session.add(client)
        session.flush()
        act = Activation(client_id=client.id, workflow="echo", version=1)
        session.add(act)
        session.flush()
        return Target("acme", "echo", act.id, True, True, "standard", None)


def test_batch_accept_dedupes_and_claims_lease(migrated_db_url: str) -> None:
    target = _target(migrated_db_url)
    items = [(target, {"n": i}, key, "webhook") for i, key in enumerate(["a", "b", "a", None])]
    with session_scope(migrated_db_url) as session:
        results = accept_many(session, items)
    assert [created for _, created in results] == [True, True, False, True]
    assert results[2][0] == results[0][0]
    with session_scope(migrated_db_url) as session:
        again = accept_many(session, [(target, {}, "b", "webhook")])
        assert again == [(results[1][0], False)]
        # outside the 24 h window the key is free again
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == results[1][0])
            .values(received_at=utcnow() - timedelta(hours=25))
        )
        [(fresh, created)] = accept_many(session, [(target, {}, "b", "webhook")])
        assert created and fresh != results[1][0]
        assert accept(session, target, {}, "b") == (fresh, False)

    with session_scope(migrated_db_url) as session:
        first = claim_due(session, 10, lease_seconds=60)
    assert len(first) == 4
    with session_scope(migrated_db_url) as session:
        assert claim_due(session, 10, lease_seconds=60) == []  # leased to the first claimer
        session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    with session_scope(migrated_db_url) as session:
        assert len(claim_due(session, 10, lease_seconds=60)) == 4  # lease ran out: due again
