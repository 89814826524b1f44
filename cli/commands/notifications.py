"""``agency notifications``: an activation's lateness limit, and one sweep pass on demand."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.commands._common import clear_errors, ready_settings

notifications_app = typer.Typer(
    help="Notifications: lateness limits and the sweep.", no_args_is_help=True
)


@notifications_app.command("late-after")
@clear_errors
def late_after_cmd(
    client: Annotated[str, typer.Argument(help="The client's slug.")],
    workflow: Annotated[str, typer.Argument(help="The activated workflow's slug.")],
    minutes: Annotated[
        int | None, typer.Argument(help="Minutes a scheduled run may be late (1 to 10080).")
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Back to the default: 2x usual duration or 15 min.")
    ] = False,
) -> None:
    """Set how late a scheduled run of the activation may be before people are told."""
    from agency.errors import InputInvalid
    from services.notifications import set_late_after

    if (minutes is None) == (not clear):
        raise InputInvalid("Give the minutes, or --clear.")
    set_late_after(ready_settings(), client, workflow, None if clear else minutes)
    typer.echo(f"{client}/{workflow}: " + ("default limit" if clear else f"{minutes} min"))


@notifications_app.command("sweep")
@clear_errors
def sweep_cmd() -> None:
    """Run one pass of the notifications sweep now; print its counts as JSON."""
    from services.notifications import sweep

    typer.echo(json.dumps(sweep(ready_settings()).summary()))
