"""Index deliveries by (activation_id, received_at) for the hourly budget shared by gateways.

It replaces the index on ``activation_id`` alone, which it covers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_activation_received", ["activation_id", "received_at"]
        )
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_activation_id"))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_activation_id"), ["activation_id"], unique=False
        )
        batch_op.drop_index("ix_webhook_deliveries_activation_received")
