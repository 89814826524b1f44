"""OAuth connections: connect attempts (oauth_states) and credential health (credential_status).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agency.db.rls import CONNECTION_POLICIES, disable_statements, enable_statements

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _client_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["client_id"],
        ["clients.id"],
        name=op.f(f"fk_{table}_client_id_clients"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "credential_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("account", sa.String(length=320), nullable=True),
        sa.Column("scopes", sa.String(length=2000), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("connected_at", when, nullable=True),
        sa.Column("refreshed_at", when, nullable=True),
        sa.Column("checked_at", when, nullable=True),
        sa.Column("failing_since", when, nullable=True),
        sa.Column("notified_at", when, nullable=True),
        sa.CheckConstraint(
            "status IN ('connected', 'expiring', 'needs_reconnect', 'failing')",
            name=op.f("ck_credential_status_status"),
        ),
        _client_fk("credential_status"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credential_status")),
        sa.UniqueConstraint(
            "client_id", "kind", "name", name=op.f("uq_credential_status_client_id_kind_name")
        ),
    )
    with op.batch_alter_table("credential_status", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credential_status_client_id"), ["client_id"], unique=False
        )
    op.create_table(
        "oauth_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.String(length=200), nullable=True),
        sa.Column("browser_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("started_at", when, nullable=True),
        sa.Column("used_at", when, nullable=True),
        sa.Column("outcome_ok", sa.Boolean(), nullable=True),
        sa.Column("outcome", sa.String(length=500), nullable=True),
        _client_fk("oauth_states"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_states_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_states")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_states_state_hash")),
    )
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oauth_states_client_id"), ["client_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_statements(CONNECTION_POLICIES):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in disable_statements(CONNECTION_POLICIES):
            op.execute(statement)
    op.drop_table("oauth_states")
    op.drop_table("credential_status")
