"""Agency-only use cases: every client, onboarding, suspending, offboarding, inviting client
users, all runs, costs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from agency.db import Activation, Client, User, session_scope, utcnow
from agency.settings import Settings
from services.auth import Invite, Principal, invite_user, require_agency
from services.clients import ClientView, add_client
from services.lifecycle import Offboarded, offboard_client, resume_client, suspend_client
from services.runs import RunView, all_runs
from services.usage import ClientCost, costs_per_client


@dataclass(frozen=True)
class ClientSummary:
    """A client row for the admin list."""

    slug: str
    name: str
    timezone: str
    status: str
    users: int
    active_workflows: int


def list_clients(settings: Settings, principal: Principal) -> list[ClientSummary]:
    """Every client with its user and active-workflow counts."""
    require_agency(principal)
    with session_scope(settings.platform_database_url) as session:
        users = dict(
            session.execute(select(User.client_id, func.count()).group_by(User.client_id)).all()
        )
        active = dict(
            session.execute(
                select(Activation.client_id, func.count())
                .where(Activation.status == "active")
                .group_by(Activation.client_id)
            ).all()
        )
        return [
            ClientSummary(
                c.slug, c.name, c.timezone, c.status, users.get(c.id, 0), active.get(c.id, 0)
            )
            for c in session.scalars(select(Client).order_by(Client.slug))
        ]


def create_client(
    settings: Settings,
    principal: Principal,
    slug: str,
    name: str,
    timezone: str = "UTC",
    contact_emails: list[str] | None = None,
) -> ClientView:
    """Onboard a client (audited as the agency user)."""
    require_agency(principal)
    return add_client(settings, slug, name, timezone, contact_emails, actor=principal.email)


def suspend(settings: Settings, principal: Principal, client: str) -> ClientView:
    """Suspend a client (see :mod:`services.lifecycle`)."""
    require_agency(principal)
    return suspend_client(settings, client, actor=principal.email)


def resume(settings: Settings, principal: Principal, client: str) -> ClientView:
    """Lift a client's suspension."""
    require_agency(principal)
    return resume_client(settings, client, actor=principal.email)


def offboard(settings: Settings, principal: Principal, client: str) -> Offboarded:
    """Offboard a client; its export goes to ``<home>/exports/<client>-<UTC time>.json``."""
    require_agency(principal)
    export = settings.home / "exports" / f"{client}-{utcnow():%Y%m%dT%H%M%SZ}.json"
    return offboard_client(settings, client, export, actor=principal.email)


def invite(settings: Settings, principal: Principal, client: str, email: str) -> Invite:
    """Create a client user with a temporary password shown once."""
    return invite_user(settings, principal, client, email)


def runs_failures_first(
    settings: Settings, principal: Principal, limit: int = 100
) -> list[RunView]:
    """Recent runs across clients, failures first."""
    return all_runs(settings, principal, limit)


def client_costs(settings: Settings, principal: Principal, days: int = 31) -> list[ClientCost]:
    """LLM spend per client."""
    return costs_per_client(settings, principal, days=days)


__all__ = [
    "ClientSummary",
    "client_costs",
    "create_client",
    "invite",
    "list_clients",
    "runs_failures_first",
]
