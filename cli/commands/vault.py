"""``agency vault bootstrap``: enable KV v2 and AppRole, and onboard clients' policies."""

from __future__ import annotations

from typing import Annotated

import typer

vault_app = typer.Typer(help="Vault (or OpenBao) set-up.", no_args_is_help=True)


@vault_app.command("bootstrap")
def bootstrap(
    client: Annotated[
        list[str] | None, typer.Option(help="Also onboard this client (repeatable).")
    ] = None,
    all_clients: Annotated[
        bool, typer.Option("--all-clients", help="Onboard every client.")
    ] = False,
) -> None:
    """Enable KV v2 at AGENCY_VAULT_MOUNT and AppRole auth; write client policies and AppRoles."""
    from agency.errors import AgencyError
    from agency.settings import get_settings
    from blocks import bootstrap_vault, onboard_client_vault, vault_connection_from_settings

    settings = get_settings()
    if not settings.uses_vault:
        typer.secho(
            "error: AGENCY_VAULT_ADDR is not set: the embedded store needs no bootstrap",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    try:
        changes = bootstrap_vault(
            vault_connection_from_settings(settings).get_client(), settings.vault_mount
        )
        for change in changes or ["KV v2 and AppRole already enabled"]:
            typer.echo(change)
        slugs = list(client or [])
        if all_clients:
            from services import list_clients

            slugs += [c.slug for c in list_clients(settings)]
        for slug in slugs:
            onboard_client_vault(settings, slug)
            typer.echo(f"client {slug}: policy client-{slug}, AppRole client-{slug}")
    except AgencyError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
