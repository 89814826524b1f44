"""Client-scoped database transactions: the service layer's filters plus, on PostgreSQL,
row-level security (role ``agency_client`` with ``app.current_client`` set).

Use them for work done on behalf of one known client; agency-level work (onboarding, sign-in,
looking up which client an API key belongs to, cross-client listings) keeps ``session_scope``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy.orm import Session

from agency.db import session_scope
from agency.db.rls import scope_to_client
from agency.settings import Settings


@contextmanager
def client_session_at(url: str, client: str) -> Iterator[Session]:
    """A transaction on the platform DB at ``url`` that can see and write only ``client``'s
    rows (enforced on PostgreSQL; on SQLite the callers' filters alone)."""
    with session_scope(url) as session:
        scope_to_client(session, client)
        yield session


def client_session(settings: Settings, client: str) -> AbstractContextManager[Session]:
    """:func:`client_session_at` on ``settings.platform_database_url``."""
    return client_session_at(settings.platform_database_url, client)
