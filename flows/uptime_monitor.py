"""``uptime_monitor`` (cron, every 5 minutes): check URLs concurrently, alert Slack when any is
down, and log every check to the client's PostgreSQL."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._common import WebUrl, table_field
from flows.manifest import CredentialRequirement, WorkflowManifest
from flows.outline import Outline, OutlineEdge, OutlineStep
from nodes import HttpRequestInput, http_request
from nodes.db_query import DbQueryInput, db_query
from nodes.notify import NotifyInput, notify


class UptimeSettings(BaseModel):
    """What a client fills in to activate uptime monitoring."""

    model_config = ConfigDict(extra="forbid")

    urls: list[WebUrl] = Field(
        min_length=1,
        max_length=100,
        title="URLs",
        description="Addresses to check, e.g. https://shop.example.com.",
    )
    timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=60,
        title="Timeout",
        description="Seconds before a check counts as down.",
    )
    expected_status_below: int = Field(
        default=400, title="Healthy below", description="A status below this counts as up."
    )
    status_table: str = table_field("uptime_checks", "PostgreSQL table for check results.")
    slack_credential: str = Field(
        default="default",
        title="Slack credential",
        description="Name of the slack_webhook credential.",
    )
    postgres_credential: str = Field(
        default="default",
        title="Database credential",
        description="Name of the postgres credential.",
    )


MANIFEST = WorkflowManifest(
    slug="uptime_monitor",
    title="Uptime monitor",
    description="Every 5 minutes, check your sites; alert Slack when one is down and keep a "
    "history of every check in your database.",
    version="1.0.0",
    entrypoint="flows/uptime_monitor.py:uptime_monitor",
    settings_model=UptimeSettings,
    credentials=(
        CredentialRequirement(
            kind="slack_webhook", setting="slack_credential", description="Receives down alerts."
        ),
        CredentialRequirement(
            kind="postgres", setting="postgres_credential", description="Stores the check history."
        ),
    ),
    triggers=("cron", "manual"),
    default_cron="*/5 * * * *",
    agency_fields=("status_table",),
    outline=Outline(
        steps=(
            OutlineStep(id="check", title="Check each site", task="http_request"),
            OutlineStep(id="alert", title="Alert Slack", task="notify"),
            OutlineStep(id="history", title="Record the checks", task="db_query"),
        ),
        edges=(
            OutlineEdge(source="check", to="alert", label="if a site is down"),
            OutlineEdge(source="check", to="history"),
            OutlineEdge(source="alert", to="history"),
        ),
    ),
)

COLUMNS = (
    "checked_at timestamptz NOT NULL DEFAULT now(), url text NOT NULL, status int, "
    "ok boolean NOT NULL, elapsed_ms double precision, error text"
)

# a check is one attempt: retrying would hide flapping and delay the alert
_check = http_request.with_options(retries=0, timeout_seconds=None)


@flow(name="uptime_monitor", log_prints=True)
def uptime_monitor(client: str, settings: UptimeSettings) -> list[dict[str, Any]]:
    """Check every URL; return one row per URL (url, status, ok, elapsed_ms, error)."""
    logger = get_run_logger()
    futures = [
        _check.submit(
            HttpRequestInput(
                client=client, url=url, method="GET", timeout_seconds=settings.timeout_seconds
            )
        )
        for url in settings.urls
    ]
    rows: list[dict[str, Any]] = []
    for url, future in zip(settings.urls, futures, strict=True):
        state = future.wait() or future.state
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException) or not state.is_completed():
            rows.append(
                {
                    "url": url,
                    "status": None,
                    "ok": False,
                    "elapsed_ms": None,
                    "error": str(outcome)[:300],
                }
            )
        else:
            ok = outcome.status < settings.expected_status_below
            rows.append(
                {
                    "url": url,
                    "status": outcome.status,
                    "ok": ok,
                    "elapsed_ms": round(outcome.elapsed_ms, 1),
                    "error": None if ok else f"HTTP {outcome.status}",
                }
            )
    down = [r for r in rows if not r["ok"]]
    logger.info("%d of %d URLs up", len(rows) - len(down), len(rows))
    if down:
        notify(
            NotifyInput(
                client=client,
                credential=settings.slack_credential,
                text="{{ down|length }} site(s) down:\n{% for r in down %}- {{ r.url }}: "
                "{{ r.error }}\n{% endfor %}",
                context={"down": down},
            )
        )
    table = settings.status_table
    db_query(
        DbQueryInput(
            client=client,
            credential=settings.postgres_credential,
            fetch="none",
            sql=f"CREATE TABLE IF NOT EXISTS {table} ({COLUMNS})",
        )
    )
    db_query(
        DbQueryInput(
            client=client,
            credential=settings.postgres_credential,
            fetch="none",
            sql=f"INSERT INTO {table} (url, status, ok, elapsed_ms, error) SELECT * FROM "
            "unnest(%(url)s::text[], %(status)s::int[], %(ok)s::boolean[], "
            "%(elapsed)s::float8[], %(error)s::text[])",
            parameters={
                "url": [r["url"] for r in rows],
                "status": [r["status"] for r in rows],
                "ok": [r["ok"] for r in rows],
                "elapsed": [r["elapsed_ms"] for r in rows],
                "error": [r["error"] for r in rows],
            },
        )
    )
    return rows
