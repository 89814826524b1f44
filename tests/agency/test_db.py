"""The platform database on SQLite and a real PostgreSQL: migrations, constraints, round-trips."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.pool import NullPool

import agency.db
from agency.db import (
    Activation,
    ActivationVersion,
    AuditLog,
    Base,
    Client,
    LlmUsage,
    User,
    alembic_config,
    current_revision,
    downgrade,
    make_engine,
    normalize_url,
    record_llm_usage,
    session_scope,
    upgrade,
)

TABLES = {"clients", "users", "activations", "activation_versions", "audit_log", "llm_usage"}
TABLES |= {"webhook_endpoints", "webhook_deliveries", "webhook_batches", "api_keys"}
TABLES |= {"credential_status", "oauth_states"}
TABLES |= {"notification_preferences", "notification_incidents", "notification_messages"}
TABLES |= {"notification_watermarks"}
TABLES |= {"releases", "rollouts"}
TABLES |= {"chains"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _add_client(url: str, slug: str = "acme") -> int:
    with session_scope(url) as session:
        client = Client(slug=slug, name=slug.title())
        session.add(client)
        session.flush()
        return client.id


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(agency.db).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(agency.db.__all__)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_migrations_create_all_tables(migrated_db_url: str) -> None:
    assert _tables(migrated_db_url) == TABLES | {"alembic_version"}
    assert current_revision(migrated_db_url) == _head()


def test_head_matches_models(migrated_db_url: str) -> None:
    engine = make_engine(migrated_db_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_duplicate_client_slug_rejected(migrated_db_url: str) -> None:
    _add_client(migrated_db_url)
    with pytest.raises(IntegrityError), session_scope(migrated_db_url) as session:
        session.add(Client(slug="acme", name="Other"))
    with session_scope(migrated_db_url) as session:
        assert session.scalars(select(Client.name)).all() == ["Acme"]


def test_duplicate_activation_rejected(migrated_db_url: str) -> None:
    client_id = _add_client(migrated_db_url)
    with session_scope(migrated_db_url) as session:
        session.add(Activation(client_id=client_id, workflow="lead-intake", timezone="UTC"))
    with pytest.raises(IntegrityError), session_scope(migrated_db_url) as session:
        session.add(Activation(client_id=client_id, workflow="lead-intake", timezone="UTC"))


def test_foreign_keys_enforced(migrated_db_url: str) -> None:
    with pytest.raises(IntegrityError), session_scope(migrated_db_url) as session:
        session.add(User(client_id=999, email="a@example.com", password_hash="x", role="client"))


def test_status_check_constraint(migrated_db_url: str) -> None:
    with pytest.raises(IntegrityError), session_scope(migrated_db_url) as session:
        session.add(Client(slug="acme", name="Acme", status="deleted"))  # type: ignore[arg-type]


def test_activation_versions_read_back_ordered(migrated_db_url: str) -> None:
    client_id = _add_client(migrated_db_url)
    with session_scope(migrated_db_url) as session:
        activation = Activation(
            client_id=client_id, workflow="digest", timezone="Europe/Berlin", version=2
        )
        session.add(activation)
        session.flush()
        # Inserted newest first so only order_by can put them back in order.
        for version, cron in ((2, "0 9 * * *"), (1, "0 8 * * *")):
            session.add(
                ActivationVersion(
                    activation_id=activation.id,
                    version=version,
                    settings={"v": version},
                    cron=cron,
                    timezone="Europe/Berlin",
                    status="active",
                    created_by="ops@agency.test",
                )
            )
    with session_scope(migrated_db_url) as session:
        stored = session.scalars(select(Activation)).one()
        assert [v.version for v in stored.versions] == [1, 2]
        assert [v.cron for v in stored.versions] == ["0 8 * * *", "0 9 * * *"]
        assert stored.status == "active" and stored.client.slug == "acme"
    with pytest.raises(IntegrityError), session_scope(migrated_db_url) as session:
        session.add(
            ActivationVersion(activation_id=stored.id, version=2, timezone="UTC", status="active")
        )


def test_json_columns_round_trip(migrated_db_url: str) -> None:
    settings = {
        "to": ["a@x.test"],
        "limit": 5,
        "ratio": 0.5,
        "on": True,
        "none": None,
        "nested": {"ünïcode": "✓", "list": [1, {"k": "v"}]},
    }
    with session_scope(migrated_db_url) as session:
        client = Client(slug="acme", name="Acme", contact_emails=["a@x.test", "b@x.test"])
        session.add(client)
        session.flush()
        session.add(Activation(client_id=client.id, workflow="w", settings=settings))
        session.add(
            AuditLog(
                actor="ops",
                client_id=client.id,
                action="activation.create",
                target="acme/w",
                detail={"settings": settings},
            )
        )
    with session_scope(migrated_db_url) as session:
        client = session.scalars(select(Client)).one()
        assert client.contact_emails == ["a@x.test", "b@x.test"]
        assert session.scalars(select(Activation.settings)).one() == settings
        assert session.scalars(select(AuditLog.detail)).one() == {"settings": settings}


def test_datetimes_are_aware_utc(migrated_db_url: str) -> None:
    berlin_noon = datetime(2025, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with session_scope(migrated_db_url) as session:
        session.add(Client(slug="acme", name="Acme", created_at=berlin_noon))
    with session_scope(migrated_db_url) as session:
        created = session.scalars(select(Client.created_at)).one()
    assert created == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert created.utcoffset() == timedelta(0)
    with pytest.raises(StatementError), session_scope(migrated_db_url) as session:
        session.add(Client(slug="naive", name="Naive", created_at=datetime(2025, 1, 1)))


def test_defaults_and_updated_at(migrated_db_url: str) -> None:
    client_id = _add_client(migrated_db_url)
    with session_scope(migrated_db_url) as session:
        session.add(Activation(client_id=client_id, workflow="w"))
    with session_scope(migrated_db_url) as session:
        activation = session.scalars(select(Activation)).one()
        assert (activation.version, activation.status, activation.timezone) == (1, "active", "UTC")
        first = activation.updated_at
        activation.status = "paused"
    with session_scope(migrated_db_url) as session:
        assert session.scalars(select(Activation.updated_at)).one() > first


def test_session_scope_rolls_back_on_error(migrated_db_url: str) -> None:
    with pytest.raises(RuntimeError), session_scope(migrated_db_url) as session:
        session.add(Client(slug="acme", name="Acme"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(migrated_db_url) as session:
        assert session.scalars(select(Client)).all() == []


def test_record_llm_usage(migrated_db_url: str) -> None:
    record_llm_usage(
        migrated_db_url,
        client="acme",
        workflow="digest",
        flow_run_id=None,
        model="gpt-4o-mini",
        prompt_tokens=120,
        completion_tokens=30,
        total_tokens=150,
    )
    with session_scope(migrated_db_url) as session:
        row = session.scalars(select(LlmUsage)).one()
    assert (row.client, row.workflow, row.flow_run_id, row.model) == (
        "acme",
        "digest",
        None,
        "gpt-4o-mini",
    )
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (120, 30, 150)
    assert row.at.tzinfo is not None


def test_upgrade_twice_is_noop(migrated_db_url: str) -> None:
    _add_client(migrated_db_url)
    upgrade(migrated_db_url)
    assert current_revision(migrated_db_url) == _head()
    assert _tables(migrated_db_url) == TABLES | {"alembic_version"}
    with session_scope(migrated_db_url) as session:
        assert session.scalars(select(Client.slug)).all() == ["acme"]


def test_downgrade_to_base_then_upgrade(migrated_db_url: str) -> None:
    downgrade(migrated_db_url, "base")
    assert current_revision(migrated_db_url) is None
    assert _tables(migrated_db_url) <= {"alembic_version"}
    upgrade(migrated_db_url)
    assert _tables(migrated_db_url) == TABLES | {"alembic_version"}
    _add_client(migrated_db_url)


def test_upgrade_creates_sqlite_parent_dir(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'agency.db'}"
    upgrade(url)
    assert (tmp_path / "nested" / "dir" / "agency.db").is_file()
    assert current_revision(url) == _head()
