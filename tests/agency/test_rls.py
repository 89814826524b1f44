"""Row-level security on PostgreSQL: a client-scoped transaction sees only its client's rows,
even with hand-written SQL, and cannot write rows for another client."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from agency.db import Activation, Client, LlmUsage, session_scope, upgrade
from agency.db.rls import ALL_POLICIES, scope_to_client


@pytest.fixture
def two_clients(postgresql_database_url: str) -> str:
    upgrade(postgresql_database_url)
    with session_scope(postgresql_database_url) as session:
        for slug in ("alpha", "beta"):
            client = Client(slug=slug, name=slug.title())
            session.add(client)
            session.flush()
            session.add(Activation(client_id=client.id, workflow="daily_digest", version=1))
            session.add(
                LlmUsage(
                    client=slug, model="m", prompt_tokens=1, completion_tokens=1, total_tokens=2
                )
            )
    return postgresql_database_url


def test_every_platform_table_has_a_policy(two_clients: str) -> None:
    with session_scope(two_clients) as session:
        rows = session.execute(
            text("SELECT tablename FROM pg_policies WHERE policyname = 'client_isolation'")
        ).all()
    assert {r[0] for r in rows} == set(ALL_POLICIES)


def test_scoped_hand_written_queries_see_one_client(two_clients: str) -> None:
    with session_scope(two_clients) as session:
        scope_to_client(session, "alpha")
        assert session.execute(text("SELECT slug FROM clients")).scalars().all() == ["alpha"]
        workflows = session.execute(
            text("SELECT c.slug FROM activations a JOIN clients c ON c.id = a.client_id")
        ).all()
        assert workflows == [("alpha",)]
        assert session.execute(text("SELECT client FROM llm_usage")).scalars().all() == ["alpha"]
        # even naming the other client explicitly finds nothing
        assert (
            session.execute(text("SELECT count(*) FROM llm_usage WHERE client = 'beta'")).scalar()
            == 0
        )
    # the platform's own role (agency level) still sees both
    with session_scope(two_clients) as session:
        assert session.execute(text("SELECT count(*) FROM clients")).scalar() == 2


def test_scoped_transaction_cannot_write_for_another_client(two_clients: str) -> None:
    with pytest.raises(DBAPIError, match="row-level security"):
        with session_scope(two_clients) as session:
            scope_to_client(session, "alpha")
            session.execute(
                text(
                    "INSERT INTO llm_usage (at, client, model, prompt_tokens, completion_tokens, "
                    "total_tokens) VALUES (now(), 'beta', 'm', 1, 1, 2)"
                )
            )


def test_scope_is_a_no_op_on_sqlite(sqlite_database_url: str) -> None:
    upgrade(sqlite_database_url)
    with session_scope(sqlite_database_url) as session:
        scope_to_client(session, "alpha")
        assert session.execute(text("SELECT count(*) FROM clients")).scalar() == 0


def test_client_session_scopes_service_reads(two_clients: str, tmp_path: object) -> None:
    from agency.settings import Settings
    from services.scoping import client_session

    settings = Settings(database_url=two_clients)
    with client_session(settings, "beta") as session:
        assert session.execute(text("SELECT client FROM llm_usage")).scalars().all() == ["beta"]
