"""Batch triggers: webhook_batches, batch settings on endpoints, per-delivery outcomes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agency.db.rls import LATER_POLICIES, disable_statements, enable_statements

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'dispatched', 'failed')",
            name=op.f("ck_webhook_batches_status"),
        ),
        sa.ForeignKeyConstraint(
            ["activation_id"],
            ["activations.id"],
            name=op.f("fk_webhook_batches_activation_id_activations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_batches")),
    )
    with op.batch_alter_table("webhook_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_batches_activation_id"), ["activation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_webhook_batches_client"), ["client"], unique=False)
        batch_op.create_index("ix_webhook_batches_due", ["status", "next_attempt_at"])
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_max_events", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("batch_max_wait_s", sa.Float(), nullable=True))
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("batched", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("batch_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("batch_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("outcome_error", sa.String(length=500), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_batch_id"), ["batch_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_webhook_deliveries_batch_id_webhook_batches"),
            "webhook_batches",
            ["batch_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_check_constraint("outcome", "outcome IN ('done', 'failed')")
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_statements(LATER_POLICIES):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in disable_statements(LATER_POLICIES):
            op.execute(statement)
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_webhook_deliveries_outcome"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_webhook_deliveries_batch_id_webhook_batches"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_batch_id"))
        for column in ("outcome_error", "outcome", "batch_index", "batch_id", "batched"):
            batch_op.drop_column(column)
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_column("batch_max_wait_s")
        batch_op.drop_column("batch_max_events")
    with op.batch_alter_table("webhook_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_batches_due")
        batch_op.drop_index(batch_op.f("ix_webhook_batches_client"))
        batch_op.drop_index(batch_op.f("ix_webhook_batches_activation_id"))
    op.drop_table("webhook_batches")
