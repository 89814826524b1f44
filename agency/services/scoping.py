"""Client-scoped database transactions: the service layer's filters plus, on PostgreSQL,
row-level security (role ``agency_client`` with ``app.current_client`` set)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from agency.db import session_scope
from agency.db.rls import scope_to_client
from agency.settings import Settings


@contextmanager
def client_session(settings: Settings, client: str) -> Iterator[Session]:
    """A transaction that can see and write only ``client``'s rows (enforced on PostgreSQL)."""
    with session_scope(settings.platform_database_url) as session:
        scope_to_client(session, client)
        yield session
