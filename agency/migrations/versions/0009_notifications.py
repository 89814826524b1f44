"""Notifications: per-person preferences and incidents (issue 22).

Adds ``notification_preferences`` (a person's switch per kind), ``notification_incidents`` (one
row per thing worth telling, keyed by kind and subject), ``notification_messages`` (each person's
copy: sent, or queued for the hour's digest), ``notification_watermarks`` (how far the sweep has
read) and ``activations.late_after_minutes`` (an activation's own lateness limit). The first
three are client-owned and get row-level security on PostgreSQL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agency.db.rls import NOTIFICATION_POLICIES, disable_statements, enable_statements

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "kind IN ('run_failed', 'approval_waiting', 'run_late', 'credential_broken')"


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
        "notification_watermarks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_notification_watermarks")),
    )
    op.create_table(
        "notification_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("opened_at", when, nullable=False),
        sa.Column("client_title", sa.String(length=300), nullable=False),
        sa.Column("client_body", sa.String(length=4000), nullable=False),
        sa.Column("agency_title", sa.String(length=300), nullable=False),
        sa.Column("agency_body", sa.String(length=4000), nullable=False),
        sa.Column("delivered_at", when, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("claimed_at", when, nullable=True),
        sa.CheckConstraint(_KINDS, name=op.f("ck_notification_incidents_kind")),
        _client_fk("notification_incidents"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_incidents")),
        sa.UniqueConstraint("kind", "subject", name=op.f("uq_notification_incidents_kind_subject")),
    )
    with op.batch_alter_table("notification_incidents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_incidents_client_id"), ["client_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notification_incidents_delivered_at"), ["delivered_at"], unique=False
        )
    op.create_table(
        "notification_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("for_agency", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.Column("due_at", when, nullable=True),
        sa.Column("digested_at", when, nullable=True),
        sa.CheckConstraint(
            "status IN ('sent', 'queued', 'digested')",
            name=op.f("ck_notification_messages_status"),
        ),
        _client_fk("notification_messages"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["notification_incidents.id"],
            name=op.f("fk_notification_messages_incident_id_notification_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_messages")),
        sa.UniqueConstraint(
            "incident_id", "email", name=op.f("uq_notification_messages_incident_id_email")
        ),
    )
    with op.batch_alter_table("notification_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_messages_client_id"), ["client_id"], unique=False
        )
        batch_op.create_index("ix_notification_messages_email_at", ["email", "at"], unique=False)
    op.create_table(
        "notification_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.CheckConstraint(_KINDS, name=op.f("ck_notification_preferences_kind")),
        _client_fk("notification_preferences"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preferences")),
        sa.UniqueConstraint(
            "user_id", "kind", name=op.f("uq_notification_preferences_user_id_kind")
        ),
    )
    with op.batch_alter_table("notification_preferences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_preferences_client_id"), ["client_id"], unique=False
        )
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("late_after_minutes", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_statements(NOTIFICATION_POLICIES):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in disable_statements(NOTIFICATION_POLICIES):
            op.execute(statement)
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.drop_column("late_after_minutes")
    op.drop_table("notification_preferences")
    op.drop_table("notification_messages")
    op.drop_table("notification_incidents")
    op.drop_table("notification_watermarks")
