"""Runs and LLM tokens / cost per workflow per month, for one client or every client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from agency.db import LlmUsage, session_scope, utcnow
from agency.settings import Settings
from services.auth import Principal, require_agency, scope_client
from services.runs import count_runs
from services.scoping import client_session


@dataclass(frozen=True)
class UsageRow:
    """One month of one workflow: runs started, LLM tokens and cost (USD, ``None`` unknown)."""

    month: str
    workflow: str
    runs: int
    tokens: int
    cost_usd: float | None


@dataclass(frozen=True)
class ClientCost:
    """One client's LLM spend over the period."""

    client: str
    tokens: int
    cost_usd: float | None


def _month(at: datetime) -> str:
    return f"{at:%Y-%m}"


def usage_by_month(
    settings: Settings, principal: Principal, *, client: str | None = None, months: int = 12
) -> list[UsageRow]:
    """The client's usage per month and workflow, newest month first (``SELECT`` on
    ``llm_usage`` plus a count of Prefect runs tagged ``client:<slug>``)."""
    slug = scope_client(principal, client)
    since = utcnow() - timedelta(days=31 * months)
    with client_session(settings, slug) as session:
        rows = session.execute(
            select(LlmUsage.at, LlmUsage.workflow, LlmUsage.total_tokens, LlmUsage.cost_usd).where(
                LlmUsage.client == slug, LlmUsage.at >= since
            )
        ).all()
    tokens: dict[tuple[str, str], int] = {}
    costs: dict[tuple[str, str], float | None] = {}
    for at, workflow, total, cost in rows:
        key = (_month(at), workflow or "")
        tokens[key] = tokens.get(key, 0) + (total or 0)
        if cost is not None:
            costs[key] = (costs.get(key) or 0.0) + cost
        else:
            costs.setdefault(key, None)
    runs = count_runs(settings, principal, since, client=slug)
    keys = sorted(set(tokens) | set(runs), key=lambda k: (k[0], k[1]), reverse=True)
    return [
        UsageRow(m, w, runs.get((m, w), 0), tokens.get((m, w), 0), costs.get((m, w)))
        for m, w in keys
    ]


def costs_per_client(
    settings: Settings, principal: Principal, *, days: int = 31
) -> list[ClientCost]:
    """Agency only: LLM tokens and cost per client over the last ``days``, costliest first."""
    require_agency(principal)
    since = utcnow() - timedelta(days=days)
    with session_scope(settings.platform_database_url) as session:
        rows = session.execute(
            select(LlmUsage.client, func.sum(LlmUsage.total_tokens), func.sum(LlmUsage.cost_usd))
            .where(LlmUsage.at >= since)
            .group_by(LlmUsage.client)
        ).all()
    out = [
        ClientCost(c, int(t or 0), float(cost) if cost is not None else None) for c, t, cost in rows
    ]
    return sorted(out, key=lambda c: (-(c.cost_usd or 0.0), -c.tokens, c.client))


__all__ = ["ClientCost", "UsageRow", "costs_per_client", "usage_by_month"]
