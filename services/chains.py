"""Chains as platform records: list, add, remove, and keep Prefect's automations in step.

A chain (``agency activate --after``) is a row of ``chains`` (client, upstream, downstream,
automation id) plus the Prefect automation that starts the downstream deployment after each
completed run of the upstream one (:mod:`deployments.chaining`). The row is the truth:
deactivating either end or offboarding the client removes both; :func:`reconcile_chains`
rebuilds an automation gone missing, drops chains whose ends are no longer active, adopts a
chain automation made before chains were recorded, and deletes any other chain automation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from agency.db import Activation, Client, session_scope
from agency.db.models import Chain
from agency.errors import NotFound
from agency.settings import Settings
from deployments import chaining
from services.audit import audit
from services.auth import Principal, scope_client
from services.clients import get_client_record
from services.scoping import client_session

__all__ = [
    "ChainView",
    "Reconciled",
    "chains_for",
    "drop_chains_of",
    "list_chains",
    "record_chain",
    "reconcile_chains",
    "remove_chain",
    "remove_chain_for",
]


#: an automation without a record is left alone this long (its activation may be committing)
STRAY_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class ChainView:
    """What faces may show of a chain."""

    client: str
    upstream: str
    downstream: str
    automation_id: str | None
    created_at: datetime


@dataclass
class Reconciled:
    """What :func:`reconcile_chains` changed (each a list of ``client:up->down``)."""

    rebuilt: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    deleted_automations: int = 0


def _view(slug: str, row: Chain) -> ChainView:
    return ChainView(slug, row.upstream, row.downstream, row.automation_id, row.created_at)


def _active(session: Session, client_id: int, workflow: str) -> Activation | None:
    return session.scalar(
        select(Activation).where(
            Activation.client_id == client_id,
            Activation.workflow == workflow,
            Activation.status != "inactive",
            Activation.deployment_id.is_not(None),
        )
    )


def record_chain(
    session: Session,
    client: Client,
    upstream: Activation,
    downstream: Activation,
    *,
    actor: str,
) -> Chain:
    """Create (or replace) the chain's automation and its row, in the caller's transaction."""
    automation_id = chaining.chain(
        client.slug,
        upstream.workflow,
        UUID(str(upstream.deployment_id)),
        downstream.workflow,
        UUID(str(downstream.deployment_id)),
    )
    row = session.scalar(
        select(Chain).where(
            Chain.client_id == client.id,
            Chain.upstream == upstream.workflow,
            Chain.downstream == downstream.workflow,
        )
    )
    if row is None:
        row = Chain(client_id=client.id, upstream=upstream.workflow, downstream=downstream.workflow)
        session.add(row)
    row.automation_id, row.created_by = str(automation_id), actor
    audit(
        session,
        actor=actor,
        action="chain.add",
        target=f"{upstream.workflow}->{downstream.workflow}",
        client_id=client.id,
    )
    session.flush()
    return row


def _drop(session: Session, client: Client, row: Chain, actor: str, why: str) -> None:
    if row.automation_id:
        chaining.delete_chain_automation(UUID(row.automation_id))
    # automations of the same name made outside this record go too
    chaining.unchain(client.slug, row.upstream, row.downstream)
    audit(
        session,
        actor=actor,
        action="chain.remove",
        target=f"{row.upstream}->{row.downstream}",
        client_id=client.id,
        detail={"why": why},
    )
    session.delete(row)


def drop_chains_of(session: Session, client: Client, workflow: str, *, actor: str) -> int:
    """Remove every chain with ``workflow`` at either end (it is being deactivated)."""
    rows = session.scalars(
        select(Chain).where(
            Chain.client_id == client.id,
            or_(Chain.upstream == workflow, Chain.downstream == workflow),
        )
    ).all()
    for row in rows:
        _drop(session, client, row, actor, f"{workflow} deactivated")
    session.flush()
    return len(rows)


def list_chains(settings: Settings, client: str) -> list[ChainView]:
    """The client's chains, by upstream then downstream."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        rows = session.scalars(
            select(Chain)
            .where(Chain.client_id == record.id)
            .order_by(Chain.upstream, Chain.downstream)
        ).all()
        return [_view(client, row) for row in rows]


def remove_chain(
    settings: Settings, client: str, upstream: str, downstream: str, *, actor: str = "cli"
) -> None:
    """Remove one chain (its automation and its row); ``NotFound`` if the client has none."""
    with client_session(settings, client) as session:
        record = get_client_record(session, client)
        row = session.scalar(
            select(Chain).where(
                Chain.client_id == record.id,
                Chain.upstream == upstream,
                Chain.downstream == downstream,
            )
        )
        if row is None:
            raise NotFound(f"No chain {upstream} -> {downstream} for client '{client}'.")
        _drop(session, record, row, actor, "removed")


def chains_for(
    settings: Settings, principal: Principal, client: str | None = None
) -> list[ChainView]:
    """The chains of the client ``principal`` acts for (portal)."""
    return list_chains(settings, scope_client(principal, client))


def remove_chain_for(
    settings: Settings,
    principal: Principal,
    upstream: str,
    downstream: str,
    client: str | None = None,
) -> None:
    """Remove one chain of the client ``principal`` acts for (portal), audited as them."""
    slug = scope_client(principal, client)
    remove_chain(settings, slug, upstream, downstream, actor=principal.email)


def _rebuild_or_drop(session: Session, client: Client, row: Chain, done: Reconciled) -> None:
    name = f"{client.slug}:{row.upstream}->{row.downstream}"
    upstream = _active(session, client.id, row.upstream)
    downstream = _active(session, client.id, row.downstream)
    if upstream is None or downstream is None:
        _drop(session, client, row, "reconcile", "an end is no longer activated")
        done.dropped.append(name)
        return
    if row.automation_id and chaining.chain_exists(UUID(row.automation_id)):
        return
    automation_id = chaining.chain(
        client.slug,
        row.upstream,
        UUID(str(upstream.deployment_id)),
        row.downstream,
        UUID(str(downstream.deployment_id)),
    )
    row.automation_id = str(automation_id)
    audit(session, actor="reconcile", action="chain.rebuild", target=name, client_id=client.id)
    done.rebuilt.append(name)


def reconcile_chains(settings: Settings) -> Reconciled:
    """Make Prefect's chain automations match the recorded chains (idempotent)."""
    done = Reconciled()
    with session_scope(settings.platform_database_url) as session:
        for client, row in session.execute(
            select(Client, Chain).join(Chain, Chain.client_id == Client.id)
        ).all():
            _rebuild_or_drop(session, client, row, done)
        session.flush()
        recorded = {
            (client.slug, row.upstream, row.downstream): row.automation_id
            for client, row in session.execute(
                select(Client, Chain).join(Chain, Chain.client_id == Client.id)
            ).all()
        }
        young = datetime.now(UTC) - STRAY_GRACE
        for automation_id, (name, created) in chaining.chain_automations().items():
            parsed = chaining.parse_chain_name(name)
            if parsed is not None and recorded.get(parsed) == str(automation_id):
                continue
            if created is not None and created > young:
                continue  # maybe an activation still committing its chain: next pass
            if parsed is not None and parsed not in recorded:
                if _adopt(session, parsed, automation_id):
                    recorded[parsed] = str(automation_id)
                    done.adopted.append(f"{parsed[0]}:{parsed[1]}->{parsed[2]}")
                    continue
            chaining.delete_chain_automation(automation_id)
            done.deleted_automations += 1
    return done


def _adopt(session: Session, parsed: tuple[str, str, str], automation_id: UUID) -> bool:
    """Record a chain automation made before chains were recorded, if both ends are active."""
    slug, upstream, downstream = parsed
    client = session.scalar(select(Client).where(Client.slug == slug))
    if client is None:
        return False
    if _active(session, client.id, upstream) is None:
        return False
    if _active(session, client.id, downstream) is None:
        return False
    session.add(
        Chain(
            client_id=client.id,
            upstream=upstream,
            downstream=downstream,
            automation_id=str(automation_id),
            created_by="reconcile",
        )
    )
    session.flush()
    return True
