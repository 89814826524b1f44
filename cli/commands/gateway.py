"""``agency gateway``, ``agency dispatcher``, ``agency webhook …`` and ``agency api-key …``."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli.commands._common import clear_errors, ready_settings

webhook_app = typer.Typer(help="Webhook triggers of activations.", no_args_is_help=True)
api_key_app = typer.Typer(help="Client API keys.", no_args_is_help=True)

_errors = clear_errors
_settings = ready_settings


def gateway_cmd(
    host: Annotated[str | None, typer.Option(help="Bind host; default from settings.")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port; default from settings.")] = None,
    dispatcher: Annotated[bool, typer.Option(help="Also dispatch the outbox here.")] = True,
) -> None:
    """Serve the webhook gateway and client API (with its dispatcher) until Ctrl-C."""
    # the gateway is a face of its own: this process becomes it rather than importing it
    args = [sys.executable, "-m", "gateway", "--dispatcher" if dispatcher else "--no-dispatcher"]
    if host:
        args += ["--host", host]
    if port:
        args += ["--port", str(port)]
    os.execv(sys.executable, args)


def dispatcher_cmd(
    concurrency: Annotated[int, typer.Option(help="Flow runs created in parallel.")] = 10,
    lease_seconds: Annotated[
        float, typer.Option(help="How long a claimed delivery is reserved before retrying.")
    ] = 60.0,
) -> None:
    """Dispatch the webhook outbox into flow runs until Ctrl-C (several may run at once)."""
    from deployments.dispatcher import run_dispatcher

    run_dispatcher(
        _settings().platform_database_url, concurrency=concurrency, lease_seconds=lease_seconds
    )


@webhook_app.command("enable")
@_errors
def webhook_enable(
    workflow: Annotated[str, typer.Argument(help="Workflow slug.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
    verifier: Annotated[
        str, typer.Option(help="standard, github, stripe, slack, shopify or token.")
    ] = "standard",
    rate_limit: Annotated[int | None, typer.Option(help="Runs per hour (default 100).")] = None,
    secret_prompt: Annotated[
        bool, typer.Option("--secret-prompt", help="Enter the sender's own secret (hidden).")
    ] = False,
    batch_max_events: Annotated[
        int | None,
        typer.Option(help="Group webhooks into one run of up to N events (1-1000)."),
    ] = None,
    batch_max_wait: Annotated[
        float, typer.Option(help="With --batch-max-events: seconds a batch may wait to fill.")
    ] = 1.0,
    batch_mode: Annotated[
        str | None,
        typer.Option(
            help="off (a run per event), adaptive (a run per event until the activation falls "
            "behind, then batches; the default where the workflow accepts batches) or always."
        ),
    ] = None,
    adaptive_inflight: Annotated[
        int, typer.Option(help="Adaptive: batch once more than N events are in flight.")
    ] = 10,
    adaptive_age: Annotated[
        float, typer.Option(help="Adaptive: batch once an event has waited this many seconds.")
    ] = 3.0,
) -> None:
    """Enable the webhook trigger; prints the URL and the secret once."""
    from services.webhooks import AdaptivePolicy, BatchPolicy, enable_webhook

    secret = typer.prompt("Sender's signing secret", hide_input=True) if secret_prompt else None
    view = enable_webhook(
        _settings(),
        client,
        workflow,
        verifier=verifier,
        secret=secret,
        rate_limit_per_hour=rate_limit,
        batch=None if batch_max_events is None else BatchPolicy(batch_max_events, batch_max_wait),
        mode=batch_mode,
        adaptive=AdaptivePolicy(adaptive_inflight, adaptive_age),
    )
    typer.echo(f"url\t{view.url}\nverifier\t{view.verifier}\nsecret\t{view.secret}")
    typer.echo("The secret is shown only now; store it in the sender.", err=True)


@webhook_app.command("rotate")
@_errors
def webhook_rotate(
    workflow: Annotated[str, typer.Argument(help="Workflow slug.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
) -> None:
    """Issue a new secret; the old one keeps verifying during the grace period."""
    from services.webhooks import rotate_webhook_secret

    view = rotate_webhook_secret(_settings(), client, workflow)
    typer.echo(f"url\t{view.url}\nverifier\t{view.verifier}\nsecret\t{view.secret}")


@webhook_app.command("show")
@_errors
def webhook_show(
    workflow: Annotated[str, typer.Argument(help="Workflow slug.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
) -> None:
    """Show the webhook URL, verifier and state (never the secret)."""
    from agency.errors import NotFound
    from services.webhooks import get_webhook

    view = get_webhook(_settings(), client, workflow)
    if view is None:
        raise NotFound(f"No webhook is enabled for '{workflow}' of client '{client}'.")
    batch = f"\tbatch {view.batch.max_events}/{view.batch.max_wait_s:g}s" if view.batch else ""
    if view.adaptive:
        batch += f"\tadaptive >{view.adaptive.inflight} in flight or {view.adaptive.age_s:g}s"
    state = "active" if view.active else "disabled"
    typer.echo(f"{view.url}\t{view.verifier}\t{state}\tmode {view.mode}{batch}")


@webhook_app.command("deliveries")
@_errors
def webhook_deliveries(
    client: Annotated[str, typer.Option(help="Client slug.")],
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """List recent deliveries, the flow runs they became and whether they ran alone or in a
    batch."""
    from services.webhooks import list_deliveries

    for d in list_deliveries(_settings(), client, workflow=workflow, limit=limit):
        typer.echo(
            f"{d.id}\t{d.workflow}\t{d.received_at:%Y-%m-%d %H:%M:%S}\t{d.status}\t"
            f"{d.flow_run_id or '-'}\t{d.mode}\t{d.outcome or '-'}"
            + (f"\t{d.outcome_error}" if d.outcome_error else "")
        )


@api_key_app.command("create")
@_errors
def api_key_create(
    client: Annotated[str, typer.Option(help="Client slug.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
) -> None:
    """Create an API key; it is printed once and stored only hashed."""
    from services.api_keys import create_api_key

    created = create_api_key(_settings(), client, name)
    typer.echo(f"id\t{created.id}\nkey\t{created.key}")


@api_key_app.command("list")
@_errors
def api_key_list(client: Annotated[str, typer.Option(help="Client slug.")]) -> None:
    """List a client's API keys (prefixes only)."""
    from services.api_keys import list_api_keys

    for k in list_api_keys(_settings(), client):
        state = "revoked" if k.revoked_at else "active"
        typer.echo(f"{k.id}\t{k.name}\t{k.prefix}…\t{state}")


@api_key_app.command("revoke")
@_errors
def api_key_revoke(
    client: Annotated[str, typer.Option(help="Client slug.")],
    key_id: Annotated[int, typer.Argument(help="Key id from `agency api-key list`.")],
) -> None:
    """Revoke an API key at once."""
    from services.api_keys import revoke_api_key

    revoke_api_key(_settings(), client, key_id)
    typer.echo(f"api key {key_id} revoked")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``agency`` app."""
    app.command("gateway")(gateway_cmd)
    app.command("dispatcher")(dispatcher_cmd)
    app.add_typer(webhook_app, name="webhook")
    app.add_typer(api_key_app, name="api-key")
