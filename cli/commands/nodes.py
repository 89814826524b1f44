"""``agency nodes``: list the node catalog (built-in and plugin nodes) or show one node."""

from __future__ import annotations

import json
from typing import Annotated

import typer

nodes_app = typer.Typer(help="The node catalog.", invoke_without_command=True)


@nodes_app.callback()
def list_cmd(ctx: typer.Context) -> None:
    """List every node: kind, credential kind, title and description."""
    if ctx.invoked_subcommand is not None:
        return
    from nodes.catalog import list_nodes

    for spec in list_nodes():
        typer.echo(f"{spec.kind}\t{spec.credential_kind or '-'}\t{spec.title}: {spec.description}")


@nodes_app.command("show")
def show_cmd(kind: Annotated[str, typer.Argument(help="Node kind, e.g. db_query.")]) -> None:
    """Print one node's spec (schemas, credential kind, example) as JSON; exit 2 if unknown."""
    from agency.errors import AgencyError
    from nodes.catalog import get_node

    try:
        spec = get_node(kind)
    except AgencyError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({**spec.describe(), "example": spec.example}, indent=2))
