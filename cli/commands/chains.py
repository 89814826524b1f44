"""``agency chains``: list, remove and reconcile a client's chains (``activate --after``)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.commands._common import ready_settings

chains_app = typer.Typer(help="Chains between a client's workflows.", no_args_is_help=True)
_settings = ready_settings


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


@chains_app.command("list")
def list_cmd(client: Annotated[str, typer.Option(help="Client slug.")]) -> None:
    """One line per chain: upstream, downstream, automation id."""
    from agency.errors import AgencyError
    from services.chains import list_chains

    try:
        views = list_chains(_settings(), client)
    except AgencyError as exc:
        raise _fail(str(exc)) from None
    for v in views:
        typer.echo(f"{v.upstream}\t{v.downstream}\t{v.automation_id or '-'}")


@chains_app.command("remove")
def remove_cmd(
    upstream: Annotated[str, typer.Argument(help="The workflow that runs first.")],
    downstream: Annotated[str, typer.Argument(help="The workflow started after it.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
    actor: Annotated[str, typer.Option(help="Who removes it (audit log).")] = "cli",
) -> None:
    """Remove one chain; both workflows stay activated."""
    from agency.errors import AgencyError
    from services.chains import remove_chain

    try:
        remove_chain(_settings(), client, upstream, downstream, actor=actor)
    except AgencyError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"chain {upstream} -> {downstream} removed for {client}")


@chains_app.command("reconcile")
def reconcile_cmd() -> None:
    """Rebuild missing chain automations, drop stale chains, delete stray automations."""
    from services.chains import reconcile_chains

    done = reconcile_chains(_settings())
    for name in done.rebuilt:
        typer.echo(f"rebuilt\t{name}")
    for name in done.dropped:
        typer.echo(f"dropped\t{name}")
    for name in done.adopted:
        typer.echo(f"adopted\t{name}")
    typer.echo(
        f"{len(done.rebuilt)} rebuilt, {len(done.dropped)} dropped, {len(done.adopted)} adopted, "
        f"{done.deleted_automations} stray automation(s) deleted"
    )
