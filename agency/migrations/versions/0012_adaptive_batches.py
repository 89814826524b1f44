"""Adaptive batching: a batch mode (off / adaptive / always) and its thresholds per webhook.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("batch_mode", sa.String(length=10), server_default="off", nullable=False)
        )
        batch_op.add_column(sa.Column("adaptive_inflight", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("adaptive_age_s", sa.Float(), nullable=True))
        batch_op.create_check_constraint(
            "batch_mode", "batch_mode IN ('off', 'adaptive', 'always')"
        )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        # NULL: accepted by an adaptive endpoint, not yet decided single or batched
        batch_op.alter_column(
            "batched", existing_type=sa.Boolean(), nullable=True, server_default=None
        )
    # endpoints that batch today keep doing so
    op.execute(
        "UPDATE webhook_endpoints SET batch_mode = 'always' WHERE batch_max_events IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("UPDATE webhook_deliveries SET batched = false WHERE batched IS NULL")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "batched", existing_type=sa.Boolean(), nullable=False, server_default=sa.false()
        )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_webhook_endpoints_batch_mode"), type_="check")
        batch_op.drop_column("adaptive_age_s")
        batch_op.drop_column("adaptive_inflight")
        batch_op.drop_column("batch_mode")
