"""Releases, pins and rollouts (issue 29).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agency.db.rls import ROLE

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PINNED = ("activations", "activation_versions")


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("workflow_version", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("commit", sa.String(length=40), nullable=True),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("workflow", "digest", name=op.f("uq_releases_workflow_digest")),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_releases_workflow"), ["workflow"], unique=False)
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("from_release_id", sa.Integer(), nullable=True),
        sa.Column("to_release_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("canary_percent", sa.Integer(), nullable=True),
        sa.Column("min_runs", sa.Integer(), nullable=False),
        sa.Column("max_hours", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("clients", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("started_at", when, nullable=False),
        sa.Column("finished_at", when, nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'halted', 'undone')", name=op.f("ck_rollouts_status")
        ),
        sa.ForeignKeyConstraint(
            ["from_release_id"], ["releases.id"], name=op.f("fk_rollouts_from_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["to_release_id"], ["releases.id"], name=op.f("fk_rollouts_to_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_workflow"), ["workflow"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # client-scoped sessions read which release an activation is pinned to, and a first
        # activation records the release it made (no RLS: a release is the agency's code,
        # owned by no client, and holds no secret)
        op.execute(f"GRANT SELECT, INSERT ON releases TO {ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE releases_id_seq TO {ROLE}")
    for table in _PINNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("release_id", sa.Integer(), nullable=True))
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_release_id_releases"), "releases", ["release_id"], ["id"]
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"REVOKE ALL ON releases FROM {ROLE}")
        op.execute(f"REVOKE ALL ON SEQUENCE releases_id_seq FROM {ROLE}")
    for table in _PINNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(
                batch_op.f(f"fk_{table}_release_id_releases"), type_="foreignkey"
            )
            batch_op.drop_column("release_id")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_workflow"))
    op.drop_table("rollouts")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_workflow"))
    op.drop_table("releases")
