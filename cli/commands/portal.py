"""``agency portal`` (serve the Streamlit client portal) and ``agency user ...``: add, invite,
password, role, remove. Passwords come only from hidden prompts, never from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from agency.settings import Settings
from cli.commands._common import clear_errors, ready_settings

PORTAL_APP = Path(__file__).resolve().parents[2] / "portal" / "app.py"
user_app = typer.Typer(help="Portal users.", no_args_is_help=True)

_errors = clear_errors
_settings = ready_settings


def portal_url(settings: Settings, host: str | None = None, port: int | None = None) -> str:
    """Where the portal answers."""
    return (
        settings.portal_url
        or f"http://{host or settings.portal_host}:{port or settings.portal_port}"
    )


def streamlit_command(
    settings: Settings, host: str | None = None, port: int | None = None
) -> list[str]:
    """The ``streamlit run portal/app.py`` command line, headless, without usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(PORTAL_APP),
        "--server.address",
        host or settings.portal_host,
        "--server.port",
        str(port or settings.portal_port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def portal_cmd(
    host: Annotated[str | None, typer.Option(help="Bind host; default 127.0.0.1.")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port; default 8501.")] = None,
) -> None:
    """Serve the client portal until Ctrl-C."""
    settings = _settings()
    typer.echo(f"portal on {portal_url(settings, host, port)}")
    try:
        raise typer.Exit(subprocess.call(streamlit_command(settings, host, port)))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@user_app.command("add")
@_errors
def user_add(
    email: Annotated[str, typer.Argument(help="Sign-in email.")],
    role: Annotated[str, typer.Option(help="client or agency.")] = "client",
    client: Annotated[str | None, typer.Option(help="Client slug (role client).")] = None,
) -> None:
    """Create a portal user; the password is asked for twice, hidden."""
    from services import create_user

    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    create_user(_settings(), email, password, role, client)
    typer.echo(f"user {email.strip().lower()} created ({role})")


@user_app.command("invite")
@_errors
def user_invite(
    email: Annotated[str, typer.Argument(help="Sign-in email of the client user.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
) -> None:
    """Create a client user with a temporary password, printed once; they must replace it at
    their first sign-in."""
    from services.auth import create_invited_user

    invite = create_invited_user(_settings(), email, client)
    typer.echo(f"user {invite.email} created for {client}")
    typer.echo(f"temporary password (shown once): {invite.temporary_password}")


@user_app.command("password")
@_errors
def user_password(
    email: Annotated[str, typer.Argument(help="Sign-in email.")],
    temporary: Annotated[
        bool, typer.Option(help="The user must choose their own at their next sign-in.")
    ] = False,
) -> None:
    """Set a user's password (asked for twice, hidden); their open portal sessions end."""
    from services.auth import find_user, set_password

    settings = _settings()
    email = find_user(settings, email)
    password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    set_password(settings, email, password, temporary=temporary)
    typer.echo(f"password of {email} changed; their sessions are ended")


@user_app.command("role")
@_errors
def user_role(
    email: Annotated[str, typer.Argument(help="Sign-in email.")],
    role: Annotated[str, typer.Argument(help="client or agency.")],
    client: Annotated[str | None, typer.Option(help="Client slug (role client).")] = None,
) -> None:
    """Change a user's role (and client); their open portal sessions end."""
    from services.auth import change_role

    change_role(_settings(), email, role, client)
    where = f" of {client}" if client else ""
    typer.echo(f"user {email.strip().lower()} is now {role}{where}; their sessions are ended")


@user_app.command("remove")
@_errors
def user_remove(
    email: Annotated[str, typer.Argument(help="Sign-in email.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a portal user; their open portal sessions end."""
    from services.auth import find_user, remove_user

    settings = _settings()
    email = find_user(settings, email)
    if not yes:
        typer.confirm(f"Remove user {email}?", abort=True)
    remove_user(settings, email)
    typer.echo(f"user {email} removed; their sessions are ended")


def register(app: typer.Typer) -> None:
    """Add ``portal`` and ``user`` to the ``agency`` command."""
    app.command("portal")(portal_cmd)
    app.add_typer(user_app, name="user")
