"""Batch outcomes are stored per delivery, with secrets masked (the client API shows them)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from agency.db import Activation, Client, WebhookBatch, WebhookDelivery, session_scope, upgrade
from agency.db.outcomes import record_outcomes
from agency.redaction import MASK, register_secret


def _stored(url: str) -> dict[str, tuple[str | None, str | None]]:
    with session_scope(url) as session:
        rows = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.outcome, WebhookDelivery.outcome_error)
        ).all()
    return {r.id: (r.outcome, r.outcome_error) for r in rows}


@pytest.mark.parametrize("database", ["sqlite_database_url", "postgresql_database_url"])
def test_outcomes_are_stored_per_event_with_secrets_masked(
    database: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(database)
    upgrade(url)
    token = f"sk-{secrets.token_hex(12)}"
    register_secret(token)
    with session_scope(url) as session:
        client = Client(slug="acme", name="Acme")
        session.add(client)
        session.flush()
        act = Activation(client_id=client.id, workflow="event_archive", version=1)
        session.add(act)
        session.flush()
        session.add(
            WebhookBatch(
                id="b1", activation_id=act.id, client="acme", workflow="event_archive", size=3
            )
        )
        for index in range(3):
            session.add(
                WebhookDelivery(
                    id=f"d{index}",
                    activation_id=act.id,
                    client="acme",
                    workflow="event_archive",
                    batch_id="b1",
                    batch_index=index,
                    batched=True,
                )
            )
    errors = [None, f"HTTPError: 401 for Bearer {token}", None]
    with session_scope(url) as session:
        assert record_outcomes(session, "b1", errors) == 3
    stored = _stored(url)
    assert stored["d0"] == ("done", None)
    assert stored["d2"] == ("done", None)
    assert stored["d1"] == ("failed", f"HTTPError: 401 for Bearer {MASK}")
    # a retried run records again, over the first outcomes; an event past the end is ignored
    with session_scope(url) as session:
        assert record_outcomes(session, "b1", [None, None, None, None]) == 3
        assert record_outcomes(session, "nope", ["x"]) == 0
    assert set(_stored(url).values()) == {("done", None)}
