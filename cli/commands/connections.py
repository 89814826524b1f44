"""``agency connections``: the agency's OAuth apps and clients' connected accounts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.commands._common import clear_errors, ready_settings

connections_app = typer.Typer(help="Connected accounts (OAuth2).", no_args_is_help=True)
app_app = typer.Typer(help="The agency's OAuth apps, one per provider.", no_args_is_help=True)
connections_app.add_typer(app_app, name="app")


def _scopes(values: list[str]) -> dict[str, list[str]]:
    from agency.errors import InputInvalid

    scopes: dict[str, list[str]] = {}
    for value in values:
        use, sep, listed = value.partition("=")
        if not sep or not use.strip():
            raise InputInvalid(f"--scope '{value}': write USE=scope1,scope2.")
        scopes[use.strip()] = [s.strip() for s in listed.replace(" ", ",").split(",") if s.strip()]
    return scopes


@app_app.command("set")
@clear_errors
def app_set(
    provider: Annotated[str, typer.Argument(help="google, microsoft, slack, hubspot or a name.")],
    client_id: Annotated[str, typer.Option(help="The app's client id at the provider.")],
    client_secret_file: Annotated[
        Path | None, typer.Option(help="File holding the client secret (else prompted).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="Name shown to clients.")] = None,
    authorize_url: Annotated[str | None, typer.Option(help="Consent page URL.")] = None,
    token_url: Annotated[str | None, typer.Option(help="Token endpoint URL.")] = None,
    revoke_url: Annotated[str | None, typer.Option(help="Revocation endpoint URL.")] = None,
    userinfo_url: Annotated[str | None, typer.Option(help="Identity endpoint URL.")] = None,
    identity_field: Annotated[
        str | None, typer.Option(help="Field of the identity answer naming the account.")
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option(help="USE=scope1,scope2 (repeat); generic providers.")
    ] = None,
    api_base_url: Annotated[str | None, typer.Option(help="Base URL of its APIs.")] = None,
    pkce: Annotated[bool | None, typer.Option("--pkce/--no-pkce", help="Use PKCE.")] = None,
) -> None:
    """Register (or replace) the agency's app for a provider; the secret goes to the store."""
    from services.connections import redirect_uri, register_app

    secret = (
        client_secret_file.read_text().strip()
        if client_secret_file
        else typer.prompt("Client secret", hide_input=True)
    )
    overrides = {
        "title": title,
        "authorize_url": authorize_url,
        "token_url": token_url,
        "revoke_url": revoke_url,
        "userinfo_url": userinfo_url,
        "identity_field": identity_field,
        "scopes": _scopes(scope or []),
        "api_base_url": api_base_url,
        "pkce": pkce,
    }
    settings = ready_settings()
    view = register_app(settings, None, provider, client_id, secret, overrides)
    typer.echo(f"registered {view.title} ({view.slug}) as kind {view.kind}")
    typer.echo(f"redirect URI to allow at the provider: {redirect_uri(settings)}")


@app_app.command("list")
@clear_errors
def app_list() -> None:
    """One line per registered app: slug, title, credential kind, client id, scopes."""
    from services.connections import apps

    for view in apps(ready_settings()):
        typer.echo(f"{view.slug}\t{view.title}\t{view.kind}\t{view.client_id}\t{view.scopes}")


@app_app.command("remove")
@clear_errors
def app_remove(provider: Annotated[str, typer.Argument(help="Provider slug.")]) -> None:
    """Forget the agency's app for a provider."""
    from services.connections import remove_app

    remove_app(ready_settings(), None, provider)
    typer.echo(f"removed {provider}")


@connections_app.command("list")
@clear_errors
def list_cmd(client: Annotated[str, typer.Option(help="Client slug.")]) -> None:
    """One line per connection or checked credential: kind/name, status, account, detail."""
    from services.connections import list_connections

    for v in list_connections(ready_settings(), None, client):
        since = f" since {v.failing_since:%Y-%m-%d %H:%M} UTC" if v.failing_since else ""
        typer.echo(f"{v.kind}/{v.name}\t{v.status}{since}\t{v.account or '-'}\t{v.detail or ''}")


@connections_app.command("connect-url")
@clear_errors
def connect_url(
    client: Annotated[str, typer.Option(help="Client slug.")],
    provider: Annotated[str, typer.Option(help="Provider slug of a registered app.")],
    name: Annotated[str, typer.Option(help="Name of the connection.")] = "default",
) -> None:
    """Print a one-time link (10 minutes) that connects the client's account at the provider."""
    from services.connections import start_connect

    attempt = start_connect(ready_settings(), None, provider, name, client)
    typer.echo(attempt.url)


@connections_app.command("revoke")
@clear_errors
def revoke_cmd(
    connection: Annotated[str, typer.Argument(help="KIND/NAME, e.g. google/default.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
) -> None:
    """Revoke the connection at the provider (when it can) and delete its tokens."""
    from agency.errors import InputInvalid
    from services.connections import revoke_connection

    kind, sep, name = connection.partition("/")
    if not sep:
        raise InputInvalid("Write the connection as KIND/NAME, e.g. google/default.")
    revoked = revoke_connection(ready_settings(), None, kind, name, client)
    typer.echo(f"deleted {connection}" + (" (revoked at the provider)" if revoked else ""))


@connections_app.command("check")
@clear_errors
def check_cmd(
    client: Annotated[str | None, typer.Option(help="Client slug (default: every client).")] = None,
) -> None:
    """Check credentials now (token refresh + identity, or the connection test) and record them;
    emails each new breakage once, like the daily check."""
    from services.health import check_credentials

    settings = ready_settings()
    report = check_credentials(settings, client)
    for r in report.results:
        who = "" if client else f"{r.client}\t"
        note = " (not checked now)" if r.transient else ""
        typer.echo(f"{who}{r.kind}/{r.name}\t{r.status}{note}\t{r.detail or ''}")
    notified = f", notified {len(report.notified)} client(s)" if report.notified else ""
    typer.echo(f"{len(report.results)} credential(s) checked in {report.seconds:.1f}s{notified}")
    for error in report.notice_errors:
        typer.secho(f"warning: {error}", err=True, fg=typer.colors.YELLOW)
