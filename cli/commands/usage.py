"""``agency usage export``: a month's runs by workflow and outcome, LLM tokens and cost, per
client, as CSV or JSON for invoicing (the same figures as the portal's Usage page)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.commands._common import clear_errors, ready_settings

usage_app = typer.Typer(help="Usage for invoicing.", no_args_is_help=True)


class Format(StrEnum):
    """Export formats."""

    csv = "csv"
    json = "json"


@usage_app.command("export")
@clear_errors
def export_cmd(
    month: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    client: Annotated[str | None, typer.Option(help="One client's slug (default: all).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="csv or json.")] = Format.csv,
    output: Annotated[Path | None, typer.Option(help="Write to this file, not stdout.")] = None,
) -> None:
    """Print (or write) one row per client and workflow: runs by outcome, tokens, cost."""
    from services.clients import get_client_record
    from services.scoping import client_session
    from services.usage import month_bounds, usage_csv, usage_json, usage_report

    settings = ready_settings()
    if client is not None:
        with client_session(settings, client) as session:
            get_client_record(session, client)
    lines = usage_report(settings, month, client)
    label = f"{month_bounds(month)[0]:%Y-%m}"
    text = usage_csv(lines) if fmt is Format.csv else usage_json(lines, label) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {len(lines)} row(s) to {output}", err=True)
