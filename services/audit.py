"""Append-only audit log of every action."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from agency.db import AuditLog


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    client_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to ``session`` (committed with the action it records)."""
    session.add(
        AuditLog(
            actor=actor, action=action, target=target, client_id=client_id, detail=detail or {}
        )
    )
