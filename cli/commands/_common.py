"""What every ``agency`` command shares: migrated settings and one-line errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import httpx
import typer

from agency.errors import AgencyError
from agency.settings import Settings, get_settings

F = TypeVar("F", bound=Callable[..., Any])
_db_ready: set[str] = set()


def ready_settings() -> Settings:
    """Settings with the platform DB migrated (once per process)."""
    settings = get_settings()
    url = settings.platform_database_url
    if url not in _db_ready:
        from agency.db import upgrade

        upgrade(url)
        _db_ready.add(url)
    return settings


def clear_errors(fn: F) -> F:
    """Turn platform errors into one line on stderr and exit code 2 (never a traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AgencyError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
        except httpx.TransportError:
            api = os.environ.get("PREFECT_API_URL", "the Prefect API")
            typer.secho(
                f"error: cannot reach {api}; is the platform running (make up)?",
                err=True,
                fg=typer.colors.RED,
            )
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]
