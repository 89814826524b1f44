"""``agency worker``: start an ``agency-prefork`` Prefect worker (creating its pool if missing).

Its runs send a flow-run heartbeat every ``deployments.recovery.HEARTBEAT_SECONDS`` (30 s, not
Prefect's 180): the crash-recovery automations reschedule the runs of a worker that died three
missed heartbeats later. ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` (or its alias
``PREFECT_RUNNER_HEARTBEAT_FREQUENCY``) in the environment wins.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import httpx
import typer

from agency.errors import AgencyError

__all__ = ["HEARTBEAT_VARIABLES", "register", "worker_cmd"]

#: Prefect's heartbeat frequency setting and its legacy alias.
HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


def worker_cmd(
    pool: Annotated[str, typer.Option(help="Work pool of type agency-prefork.")] = "agency-prefork",
    limit: Annotated[
        int | None, typer.Option(help="Most flow runs at once (default: no limit).")
    ] = None,
    poll_seconds: Annotated[
        float, typer.Option(help="Seconds between polls for new runs (Prefect's default: 10).")
    ] = 1.0,
) -> None:
    """Run flow runs of POOL, each in a child forked from a warm template, until Ctrl-C."""
    from deployments import ensure_work_pool
    from deployments.recovery import HEARTBEAT_SECONDS

    try:
        ensure_work_pool(pool, prefork=True)
    except (AgencyError, httpx.HTTPError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    args = [sys.executable, "-m", "prefect", "worker", "start"]
    args += ["--pool", pool, "--type", "agency-prefork"]
    if limit is not None:
        args += ["--limit", str(limit)]
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = str(poll_seconds)
    if not any(os.environ.get(name) for name in HEARTBEAT_VARIABLES):
        os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_SECONDS)
    os.execv(sys.executable, args)


def register(app: typer.Typer) -> None:
    """Add ``agency worker`` to the CLI."""
    app.command("worker")(worker_cmd)
