"""Row-level security on the platform tables (PostgreSQL), keyed on ``app.current_client``.

Client-scoped work runs as the NOLOGIN role ``agency_client`` (``SET LOCAL ROLE``) with
``app.current_client`` set for the transaction; the policies then let it see only that client's
rows, even for a hand-written query. The platform's own login role owns the tables and is not
subject to the policies (agency-level work: onboarding, dispatch, admin pages). On SQLite,
which has no RLS, scoping is the service layer's filters alone.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

ROLE = "agency_client"
CURRENT = "current_setting('app.current_client', true)"
_CLIENT_ID = f"(SELECT id FROM clients WHERE slug = {CURRENT})"

# table -> condition a row must meet for the current client
POLICIES: dict[str, str] = {
    "clients": f"slug = {CURRENT}",
    "users": f"client_id = {_CLIENT_ID}",
    "activations": f"client_id = {_CLIENT_ID}",
    "activation_versions": f"activation_id IN (SELECT id FROM activations WHERE client_id = "
    f"{_CLIENT_ID})",
    "audit_log": f"client_id = {_CLIENT_ID}",
    "llm_usage": f"client = {CURRENT}",
    "webhook_endpoints": f"activation_id IN (SELECT id FROM activations WHERE client_id = "
    f"{_CLIENT_ID})",
    "webhook_deliveries": f"client = {CURRENT}",
    "api_keys": f"client_id = {_CLIENT_ID}",
}

# tables added after migration 0004, each enabled by the migration that creates it
LATER_POLICIES: dict[str, str] = {"webhook_batches": f"client = {CURRENT}"}
# tables added by migration 0008 (OAuth connections and credential health)
CONNECTION_POLICIES: dict[str, str] = {
    "credential_status": f"client_id = {_CLIENT_ID}",
    "oauth_states": f"client_id = {_CLIENT_ID}",
}
# tables added by migration 0009 (notification preferences, incidents and messages)
NOTIFICATION_POLICIES: dict[str, str] = {
    "notification_preferences": f"client_id = {_CLIENT_ID}",
    "notification_incidents": f"client_id = {_CLIENT_ID}",
    "notification_messages": f"client_id = {_CLIENT_ID}",
}
# tables added by migration 0010 (chains as platform records)
CHAIN_POLICIES: dict[str, str] = {"chains": f"client_id = {_CLIENT_ID}"}
ALL_POLICIES: dict[str, str] = {
    **POLICIES,
    **LATER_POLICIES,
    **CONNECTION_POLICIES,
    **NOTIFICATION_POLICIES,
    **CHAIN_POLICIES,
}


def enable_statements(tables: dict[str, str] = POLICIES) -> list[str]:
    """DDL that creates the role, grants it the tables and enables one policy per table."""
    statements = [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN "
        f"CREATE ROLE {ROLE} NOLOGIN; END IF; END $$",
        # a DBA may pre-create the role and grant it; then the migration needs no CREATEROLE
        f"DO $$ BEGIN IF NOT pg_has_role(current_user, '{ROLE}', 'MEMBER') THEN "
        f"EXECUTE 'GRANT {ROLE} TO ' || quote_ident(current_user); END IF; END $$",
    ]
    for table, condition in tables.items():
        statements += [
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {ROLE}",
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS client_isolation ON {table}",
            f"CREATE POLICY client_isolation ON {table} TO {ROLE} USING ({condition}) "
            f"WITH CHECK ({condition})",
        ]
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ROLE}")
    return statements


def disable_statements(tables: dict[str, str] = POLICIES) -> list[str]:
    """DDL that removes the policies (the role stays: other databases may use it)."""
    statements = []
    for table in tables:
        statements += [
            f"DROP POLICY IF EXISTS client_isolation ON {table}",
            f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
            f"REVOKE ALL ON {table} FROM {ROLE}",
        ]
    return statements


def scope_to_client(session: Session, client: str) -> None:
    """Make the rest of this transaction see only ``client``'s rows (no-op off PostgreSQL)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text(f"SET LOCAL ROLE {ROLE}"))
    session.execute(
        text("SELECT set_config('app.current_client', :client, true)"), {"client": client}
    )
