"""Engines, sessions and migrations for the platform database, all keyed by a SQLAlchemy URL.

Typical use::

    from agency.db import session_scope, upgrade

    upgrade(settings.platform_database_url)
    with session_scope(settings.platform_database_url) as session:
        session.add(Client(slug="acme", name="Acme"))
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

_lock = threading.Lock()
_factories: dict[str, sessionmaker[Session]] = {}


def normalize_url(url: str) -> str:
    """Return ``url`` with PostgreSQL URLs pointed at the psycopg 3 driver.

    ``postgres://`` (Heroku style) and driverless ``postgresql://`` become
    ``postgresql+psycopg://``; every other URL is returned unchanged.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _ensure_sqlite_dir(url: URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, **engine_kwargs: Any) -> Engine:
    """Create a new engine for ``url`` (not cached; dispose it when done).

    SQLite gets ``check_same_thread=False`` and enforced foreign keys; PostgreSQL URLs are
    rewritten by :func:`normalize_url`. Extra keyword arguments go to ``create_engine``.
    """
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        _ensure_sqlite_dir(parsed)
        # writers wait for each other up to 30 s (an OAuth refresh holds the write lock while the
        # provider answers; pysqlite's default of 5 s turned queued refreshers into errors)
        connect_args = {
            "check_same_thread": False,
            "timeout": 30,
            **engine_kwargs.pop("connect_args", {}),
        }
        engine = create_engine(parsed, connect_args=connect_args, **engine_kwargs)
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    engine_kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **engine_kwargs)


def session_factory(url: str) -> sessionmaker[Session]:
    """Return the process-wide session factory for ``url``, creating its engine on first call.

    Sessions keep loaded attributes after commit (``expire_on_commit=False``) so services can
    return ORM objects from a finished :func:`session_scope`.
    """
    key = normalize_url(url)
    with _lock:
        factory = _factories.get(key)
        if factory is None:
            factory = sessionmaker(bind=make_engine(key), expire_on_commit=False)
            _factories[key] = factory
        return factory


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """Yield a session on ``url`` that commits when the block succeeds and rolls back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close every cached engine's connections and forget them (tests, before dropping a DB)."""
    with _lock:
        factories = list(_factories.values())
        _factories.clear()
    for factory in factories:
        bind = factory.kw["bind"]
        bind.dispose()


def alembic_config() -> Config:
    """An alembic ``Config`` for the platform migrations, built without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _run_migration(url: str, action: str, revision: str) -> None:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (a no-op when already there)."""
    _run_migration(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops every table)."""
    _run_migration(url, "downgrade", revision)


def current_revision(url: str) -> str | None:
    """The alembic revision the database at ``url`` is at, or ``None`` if never migrated."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
