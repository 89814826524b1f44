"""Runs and LLM tokens / cost per workflow per month, for one client or every client.

:func:`month_usage` is the one source of the invoicing figures: the Usage page's table, its
CSV download, the agency's all-clients export and ``agency usage export`` all render its rows
with :func:`usage_records`, so they cannot disagree.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from agency.db import Activation, Client, LlmUsage, session_scope, utcnow
from agency.errors import InputInvalid
from agency.settings import Settings
from services.auth import Principal, check_session, require_agency, scope_client
from services.runs import OUTCOMES, count_outcomes, count_runs
from services.scoping import client_session

#: the export's columns, in order (also the keys of :func:`usage_records`)
COLUMNS: tuple[str, ...] = (
    "month",
    "client",
    "workflow",
    "runs",
    *OUTCOMES,
    "llm_tokens",
    "cost_usd",
)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


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


@dataclass(frozen=True)
class UsageLine:
    """One client's one workflow in one month: runs started, by outcome, and LLM spend."""

    month: str
    client: str
    workflow: str
    outcomes: dict[str, int]
    tokens: int
    cost_usd: float | None

    @property
    def runs(self) -> int:
        return sum(self.outcomes.values())


def _month(at: datetime) -> str:
    return f"{at:%Y-%m}"


def recent_months(count: int = 13) -> list[str]:
    """This month (UTC) and the ``count - 1`` before it, newest first (``YYYY-MM``)."""
    now = utcnow()
    index = now.year * 12 + now.month - 1
    return [f"{(index - i) // 12:04d}-{(index - i) % 12 + 1:02d}" for i in range(count)]


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``YYYY-MM`` in UTC; ``InputInvalid`` for anything else."""
    found = _MONTH.match(month.strip())
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise InputInvalid(f"'{month}' is not a month: write it as YYYY-MM, e.g. 2025-01.")
    year, number = int(found.group(1)), int(found.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _llm_spend(
    settings: Settings, client: str | None, start: datetime, end: datetime
) -> dict[tuple[str, str], tuple[int, float | None]]:
    """``(client, workflow) -> (tokens, cost)`` from ``llm_usage`` (cost ``None``: unknown)."""
    query = (
        select(
            LlmUsage.client,
            LlmUsage.workflow,
            func.sum(LlmUsage.total_tokens),
            func.sum(LlmUsage.cost_usd),
        )
        .where(LlmUsage.at >= start, LlmUsage.at < end)
        .group_by(LlmUsage.client, LlmUsage.workflow)
    )
    if client is None:
        with session_scope(settings.platform_database_url) as session:
            rows = session.execute(query).all()
    else:
        with client_session(settings, client) as session:
            rows = session.execute(query.where(LlmUsage.client == client)).all()
    spend: dict[tuple[str, str], tuple[int, float | None]] = {}
    for slug, workflow, tokens, cost in rows:
        key = (slug, workflow or "")
        before_tokens, before_cost = spend.get(key, (0, None))
        total = None if cost is None and before_cost is None else (before_cost or 0) + (cost or 0)
        spend[key] = (before_tokens + int(tokens or 0), total)
    return spend


def _activated(settings: Settings, client: str) -> set[str]:
    """The workflows the client has or had activated (a hint for counting its runs)."""
    with client_session(settings, client) as session:
        return set(
            session.scalars(
                select(Activation.workflow).join(Client).where(Client.slug == client)
            ).all()
        )


def usage_report(settings: Settings, month: str, client: str | None = None) -> list[UsageLine]:
    """Usage of ``month`` (``YYYY-MM``) per client and workflow, for one client or (``None``)
    all; no principal: the CLI's operator view, and :func:`month_usage` after its checks."""
    start, end = month_bounds(month)
    spend = _llm_spend(settings, client, start, end)
    hint = _activated(settings, client) | {w for _, w in spend} if client else set()
    runs = count_outcomes(client, start, end, workflows=hint)
    label = f"{start:%Y-%m}"
    return [
        UsageLine(
            label,
            slug,
            workflow,
            runs.get((slug, workflow), dict.fromkeys(OUTCOMES, 0)),
            *spend.get((slug, workflow), (0, None)),
        )
        for slug, workflow in sorted(set(spend) | set(runs))
    ]


def month_usage(
    settings: Settings,
    principal: Principal,
    month: str,
    *,
    client: str | None = None,
    all_clients: bool = False,
) -> list[UsageLine]:
    """The principal's usage of ``month``: its own client's (a client user), the named
    client's, or with ``all_clients`` every client's (agency only)."""
    if all_clients:
        require_agency(principal)
        return usage_report(settings, month)
    return usage_report(settings, month, scope_client(principal, client))


def usage_records(lines: list[UsageLine]) -> list[dict[str, Any]]:
    """The rows every face shows and exports (:data:`COLUMNS`); cost rounded to 1/10000 USD."""
    return [
        {
            "month": line.month,
            "client": line.client,
            "workflow": line.workflow,
            "runs": line.runs,
            **{outcome: line.outcomes.get(outcome, 0) for outcome in OUTCOMES},
            "llm_tokens": line.tokens,
            "cost_usd": None if line.cost_usd is None else round(line.cost_usd, 4),
        }
        for line in lines
    ]


def usage_csv(lines: list[UsageLine]) -> str:
    """:func:`usage_records` as CSV with a header row (an unknown cost is an empty cell)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(usage_records(lines))
    return out.getvalue()


def usage_json(lines: list[UsageLine], month: str) -> str:
    """:func:`usage_records` as a JSON object ``{"month": ..., "rows": [...]}``."""
    return json.dumps({"month": month, "rows": usage_records(lines)}, indent=2)


def export_name(month: str, client: str | None, ext: str) -> str:
    """The download's file name, e.g. ``usage-2025-01-acme.csv``."""
    return f"usage-{month}-{client or 'all-clients'}.{ext}"


def export_usage(
    settings: Settings,
    principal: Principal,
    month: str,
    *,
    client: str | None = None,
    all_clients: bool = False,
    fmt: str = "csv",
) -> tuple[str, bytes]:
    """``(filename, content)`` of the principal's usage of ``month`` as CSV or JSON."""
    check_session(principal)
    if fmt not in ("csv", "json"):
        raise InputInvalid("The export format is csv or json.")
    lines = month_usage(settings, principal, month, client=client, all_clients=all_clients)
    label = month_bounds(month)[0].strftime("%Y-%m")
    text = usage_csv(lines) if fmt == "csv" else usage_json(lines, label)
    slug = None if all_clients else (client or principal.client)
    return export_name(label, slug, fmt), text.encode()


def tokens_by_month(
    settings: Settings, principal: Principal, *, client: str | None = None, months: int = 12
) -> dict[str, int]:
    """LLM tokens per month (``YYYY-MM``) over the last ``months``, for the Usage chart."""
    slug = scope_client(principal, client)
    since = utcnow() - timedelta(days=31 * months)
    with client_session(settings, slug) as session:
        rows = session.execute(
            select(LlmUsage.at, LlmUsage.total_tokens).where(
                LlmUsage.client == slug, LlmUsage.at >= since
            )
        ).all()
    tokens: dict[str, int] = {}
    for at, total in rows:
        tokens[_month(at)] = tokens.get(_month(at), 0) + (total or 0)
    return dict(sorted(tokens.items()))


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


__all__ = [
    "COLUMNS",
    "ClientCost",
    "UsageLine",
    "UsageRow",
    "costs_per_client",
    "export_usage",
    "month_bounds",
    "month_usage",
    "recent_months",
    "tokens_by_month",
    "usage_by_month",
    "usage_csv",
    "usage_json",
    "usage_records",
    "usage_report",
]
