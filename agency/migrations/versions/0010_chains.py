"""Chains as platform records (issue 31).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agency.db.rls import CHAIN_POLICIES, disable_statements, enable_statements

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``chains`` (one row per chain of a client, with its automation id)."""
    op.create_table(
        "chains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("downstream", sa.String(length=64), nullable=False),
        sa.Column("automation_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_chains_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chains")),
        sa.UniqueConstraint(
            "client_id",
            "upstream",
            "downstream",
            name=op.f("uq_chains_client_id_upstream_downstream"),
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_statements(CHAIN_POLICIES):
            op.execute(statement)


def downgrade() -> None:
    """Drop ``chains``."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in disable_statements(CHAIN_POLICIES):
            op.execute(statement)
    op.drop_table("chains")
