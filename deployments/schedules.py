"""Cron schedules in a client's IANA time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from agency.errors import InputInvalid


def check_timezone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name`` or raise ``InputInvalid``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputInvalid(
            f"Unknown time zone '{name}': use an IANA name such as Europe/Paris or UTC."
        ) from None


def check_cron(expression: str) -> str:
    """Return the cron expression (5 fields) or raise ``InputInvalid``."""
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise InputInvalid(
            f"Invalid cron expression '{expression}': use 5 fields, e.g. '0 7 * * *' for 07:00."
        )
    return expression


def next_runs(
    expression: str, timezone: str, count: int = 5, start: datetime | None = None
) -> list[datetime]:
    """The next ``count`` fire times of ``expression`` in ``timezone`` (aware datetimes)."""
    zone = check_timezone(timezone)
    base = (start or datetime.now(zone)).astimezone(zone)
    it = croniter(check_cron(expression), base)
    return [it.get_next(datetime) for _ in range(count)]
