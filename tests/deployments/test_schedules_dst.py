"""Cron schedules keep the client's wall-clock time across DST changes, in our own preview
(`next_runs`) and in the schedule Prefect stores on the deployment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect.client.orchestration import get_client
from prefect.server.schemas.schedules import CronSchedule as ServerCron

from agency.db import upgrade
from agency.settings import Settings
from deployments import ensure_work_pool, next_runs
from services import activate, add_client

SETTINGS = {"source_url": "https://api.example.com/today", "recipients": ["ops@example.com"]}


def test_next_runs_stay_at_local_time_across_spring_forward_and_fall_back() -> None:
    # Europe/Paris: 2026-03-29 02:00 → 03:00 (UTC+1 → UTC+2), 2026-10-25 03:00 → 02:00
    spring = next_runs("0 7 * * *", "Europe/Paris", 3, datetime(2026, 3, 27, 12, tzinfo=UTC))
    assert [r.hour for r in spring] == [7, 7, 7]
    assert [r.astimezone(UTC).hour for r in spring] == [6, 5, 5]
    fall = next_runs("30 8 * * *", "America/New_York", 3, datetime(2026, 10, 30, 18, tzinfo=UTC))
    assert [(r.hour, r.minute) for r in fall] == [(8, 30)] * 3
    assert [r.astimezone(UTC).hour for r in fall] == [12, 13, 13]  # EDT → EST on Nov 1


def test_prefect_schedule_keeps_client_time_zone_over_dst(
    tmp_path: Path, prefect_server: str, client_slug: str
) -> None:
    settings = Settings(home=tmp_path, work_pool="agency-dst-tests")
    upgrade(settings.platform_database_url)
    ensure_work_pool(settings.work_pool)
    add_client(settings, client_slug, client_slug, "Europe/Paris")
    activate(settings, client_slug, "daily_digest", SETTINGS, "0 7 * * *")
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment_by_name(f"daily_digest/{client_slug}")
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 7 * * *", "Europe/Paris")
    # the server's own schedule model computes the run times it will create from the stored cron
    stored = ServerCron(cron=schedule.schedule.cron, timezone=schedule.schedule.timezone)
    dates = asyncio.run(stored.get_dates(n=4, start=datetime(2026, 3, 27, 12, tzinfo=UTC)))
    assert [d.astimezone(ZoneInfo("Europe/Paris")).hour for d in dates] == [7, 7, 7, 7]
    assert [d.astimezone(UTC).hour for d in dates] == [6, 5, 5, 5]  # CET → CEST on Mar 29
