"""``agency demo``: the demo agency (create, fire its webhook, ``--reset``), see
:mod:`services.demo`. Needs the platform running (``make up``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agency.errors import InputInvalid
from cli.commands._common import clear_errors, ready_settings

if TYPE_CHECKING:
    from services.demo import CreatedDemo

demo_app = typer.Typer(help="The demo agency: a client whose workflows run with no account.")


def _summary(created: CreatedDemo) -> None:
    from services.demo import DemoLayout
    from services.demo.setup import webhook_command

    settings = ready_settings()
    layout = DemoLayout.of(settings)
    from cli.commands.portal import portal_url

    typer.echo(
        "demo created (passwords are shown this once):\n"
        f"  client       {created.client} (Demo Bakery)\n"
        f"  agency user  {created.agency_email}  password {created.agency_password}\n"
        f"  client user  {created.client_email}  password {created.client_password}\n"
        f"  portal       {portal_url(settings)}  (Runs; agency: Demo inbox)\n"
        f"  credentials  openai -> {layout.llm_base_url}, smtp -> {layout.host}:"
        f"{layout.smtp_port} (the demo mail catcher)"
    )
    for workflow, trigger in created.workflows.items():
        typer.echo(f"  workflow     {workflow}: {trigger}")
    typer.echo(
        f"  webhook      {created.webhook_url}  (fire it: agency demo send-webhook; "
        f"unsigned `{webhook_command(settings)}` is refused with 401)"
    )
    if created.first_runs:
        typer.echo(
            f"  first runs   started: {', '.join(created.first_runs)} "
            "(COMPLETED within a minute or two; `agency demo status` shows them)"
        )


@demo_app.callback(invoke_without_command=True)
@clear_errors
def demo(
    ctx: typer.Context,
    reset: Annotated[
        bool, typer.Option("--reset", help="Remove the demo client, users, runs and inbox.")
    ] = False,
    if_fresh: Annotated[
        bool,
        typer.Option("--if-fresh", help="Create it only on a home without clients or users."),
    ] = False,
    openai_from_file: Annotated[
        Path | None,
        typer.Option(help="The client's own openai credential (JSON) instead of the demo model."),
    ] = None,
    no_runs: Annotated[bool, typer.Option("--no-runs", help="Do not start first runs.")] = False,
) -> None:
    """Create the demo agency (or with --reset remove it)."""
    if ctx.invoked_subcommand is not None:
        return
    from services.demo import create_demo
    from services.demo.setup import demo_exists, home_is_fresh, reset_demo

    settings = ready_settings()
    if reset:
        for line in reset_demo(settings) or ["no demo to remove"]:
            typer.echo(line)
        return
    if if_fresh and demo_exists(settings):
        typer.echo("the demo exists already (agency demo status: its runs and emails)")
        return
    if if_fresh and not home_is_fresh(settings):
        typer.echo("demo not created: this platform home has clients or users already")
        return
    openai = None
    if openai_from_file is not None:
        try:
            openai = json.loads(openai_from_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputInvalid(f"Cannot read {openai_from_file}: {type(exc).__name__}.") from None
    _summary(create_demo(settings, openai=openai, start_runs=not no_runs))


@demo_app.command("send-webhook")
@clear_errors
def send_webhook() -> None:
    """POST one signed event to the demo's webhook (review_sentiment) through the gateway."""
    from services.demo import send_demo_webhook

    delivery = send_demo_webhook(ready_settings())
    typer.echo(f"webhook accepted: delivery {delivery} (its run: agency demo status)")


@demo_app.command("status")
@clear_errors
def status() -> None:
    """The demo client's runs (in start order) and the emails in the demo inbox (newest first)."""
    from deployments.runs import client_runs
    from services.demo import DEMO_CLIENT, DemoLayout, read_inbox

    settings = ready_settings()
    for run in client_runs(DEMO_CLIENT, page=20):
        state = run.state.type.value if run.state else "?"
        typer.echo(f"run   {run.name}\t{state}\t{', '.join(sorted(run.tags))}")
    for message in read_inbox(DemoLayout.of(settings).inbox, limit=20):
        typer.echo(f"email {message.date}\t{message.recipients}\t{message.subject}")
