"""The ``agency`` command line: onboard clients, store credentials, activate and run workflows.

Every command exits 2 with one plain line on bad input (unknown client or workflow, bad cron,
time zone or settings) and writes nothing in that case.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from agency.settings import get_settings
from cli.commands._common import clear_errors, ready_settings
from cli.stack import AUTH_FILE

app = typer.Typer(help="Managed workflow agency platform on Prefect.", no_args_is_help=True)
client_app = typer.Typer(
    help="Onboard, list, suspend, resume and offboard clients.", no_args_is_help=True
)
credentials_app = typer.Typer(
    help="Store, list and delete client credentials.", no_args_is_help=True
)
db_app = typer.Typer(help="Platform database.", no_args_is_help=True)
app.add_typer(client_app, name="client")
app.add_typer(credentials_app, name="credentials")
app.add_typer(db_app, name="db")

_settings = ready_settings


def _parse_settings(items: list[str], settings_file: Path | None) -> dict[str, Any]:
    from agency.errors import InputInvalid

    data: dict[str, Any] = {}
    if settings_file is not None:
        try:
            data.update(json.loads(settings_file.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputInvalid(f"Cannot read settings file {settings_file}: {exc}.") from None
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputInvalid(f"Setting '{item}' must look like key=value.")
        try:
            data[key] = json.loads(value)
        except json.JSONDecodeError:
            data[key] = value
    return data


# ---- clients ---------------------------------------------------------------------------------


@client_app.command("add")
@clear_errors
def client_add(
    slug: Annotated[str, typer.Argument(help="Lowercase id, e.g. acme.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the client.")] = "UTC",
    email: Annotated[list[str] | None, typer.Option(help="Contact email (repeatable).")] = None,
) -> None:
    """Create a client."""
    from services import add_client

    view = add_client(_settings(), slug, name or slug, timezone, email or [])
    typer.echo(f"client {view.slug} created ({view.timezone})")


@client_app.command("list")
@clear_errors
def client_list() -> None:
    """List clients."""
    from services import list_clients

    for c in list_clients(_settings()):
        typer.echo(f"{c.slug}\t{c.name}\t{c.timezone}\t{c.status}\t{','.join(c.contact_emails)}")


@client_app.command("suspend")
@clear_errors
def client_suspend(slug: Annotated[str, typer.Argument(help="The client.")]) -> None:
    """Suspend a client: schedules pause; portal, client API and webhooks refuse it at once."""
    from services.lifecycle import suspend_client

    view = suspend_client(_settings(), slug)
    typer.echo(f"client {view.slug} {view.status}")


@client_app.command("resume")
@clear_errors
def client_resume(slug: Annotated[str, typer.Argument(help="The client.")]) -> None:
    """Lift a suspension: the client's active workflows are scheduled again."""
    from services.lifecycle import resume_client

    view = resume_client(_settings(), slug)
    typer.echo(f"client {view.slug} {view.status}")


@client_app.command("offboard")
@clear_errors
def client_offboard(
    slug: Annotated[str, typer.Argument(help="The client.")],
    export: Annotated[Path, typer.Option(help="New JSON file for the client's data.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Export the client's data to EXPORT, then delete the client everywhere."""
    from services.lifecycle import offboard_client

    if not yes:
        typer.confirm(f"Delete client {slug} and everything it has?", abort=True)
    done = offboard_client(_settings(), slug, export)
    typer.echo(
        f"client {done.client} offboarded in {done.seconds:g} s: {done.runs} run(s), "
        f"{done.deployments} deployment(s), {done.secrets} secret(s), {done.users} user(s) "
        f"deleted; export in {done.export}"
    )


# ---- credentials -----------------------------------------------------------------------------


def _prompt_credential(kind: str) -> dict[str, Any]:
    from blocks import kind_model

    model = kind_model(kind)
    secret = set(model.secret_fields())
    if not sys.stdin.isatty():
        from agency.errors import InputInvalid

        raise InputInvalid("No terminal to prompt on: pass the values with --from-file FILE.json.")
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        label = f"{field.title or name} ({field.description})"
        default = None if field.is_required() else field.get_default()
        value = typer.prompt(
            label,
            default="" if default is None else str(default),
            hide_input=name in secret,
            show_default=name not in secret,
        )
        if value != "":
            data[name] = value
    return data


@credentials_app.command("set")
@clear_errors
def credentials_set(
    client: Annotated[str, typer.Option(help="Client slug.")],
    kind: Annotated[
        str,
        typer.Option(help="smtp, openai, postgres, http_auth, slack_webhook, s3, webhook_signing."),
    ],
    name: Annotated[str, typer.Option(help="Credential name.")] = "default",
    from_file: Annotated[Path | None, typer.Option(help="JSON file with the values.")] = None,
) -> None:
    """Store a credential; values come from hidden prompts or a JSON file, never from argv."""
    from agency.errors import InputInvalid
    from services import set_credential

    if from_file is not None:
        try:
            data = json.loads(from_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputInvalid(f"Cannot read {from_file}: {exc.__class__.__name__}.") from None
    else:
        data = _prompt_credential(kind)
    view = set_credential(_settings(), client, kind, name, data)
    typer.echo(f"credential {view.kind}/{view.name} stored for {client} ({view.store})")


@credentials_app.command("template")
@clear_errors
def credentials_template(
    kind: Annotated[str, typer.Option(help="The credential kind (see --help of set).")],
) -> None:
    """Print an example JSON of a credential kind for `set --from-file` (replace the <...>)."""
    from services.credential_templates import credential_template

    typer.echo(json.dumps(credential_template(kind), indent=2))


@credentials_app.command("list")
@clear_errors
def credentials_list(client: Annotated[str, typer.Option(help="Client slug.")]) -> None:
    """List a client's credentials (names only; values are never shown)."""
    from services import list_credentials

    for c in list_credentials(_settings(), client):
        typer.echo(f"{c.kind}\t{c.name}\t{c.store}")


@credentials_app.command("delete")
@clear_errors
def credentials_delete(
    client: Annotated[str, typer.Option(help="Client slug.")],
    kind: Annotated[str, typer.Option(help="Credential kind.")],
    name: Annotated[str, typer.Option(help="Credential name.")] = "default",
) -> None:
    """Delete a credential's values and reference."""
    from services import delete_credential

    delete_credential(_settings(), client, kind, name)
    typer.echo(f"credential {kind}/{name} deleted for {client}")


# ---- activations -----------------------------------------------------------------------------


@app.command("activate")
@clear_errors
def activate_cmd(
    workflow: Annotated[str, typer.Argument(help="Workflow slug, e.g. daily_digest.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
    cron: Annotated[str | None, typer.Option(help="Cron, e.g. '0 7 * * *'.")] = None,
    no_schedule: Annotated[bool, typer.Option(help="Manual/webhook runs only.")] = False,
    timezone: Annotated[str | None, typer.Option(help="Default: the client's.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Setting key=value.")] = None,
    settings_file: Annotated[Path | None, typer.Option(help="JSON settings file.")] = None,
    after: Annotated[str | None, typer.Option(help="Also run when this one completes.")] = None,
    release: Annotated[
        str | None, typer.Option(help="Release to pin (digest prefix, version or 'latest').")
    ] = None,
) -> None:
    """Create or update the client's deployment of a workflow."""
    from flows.catalog import get_workflow
    from services import activate

    manifest = get_workflow(workflow)
    schedule = None if no_schedule else (cron or manifest.default_cron)
    data = _parse_settings(set_ or [], settings_file)
    view = activate(
        _settings(), client, workflow, data, schedule, timezone, after=after, release=release
    )
    when = f"cron '{view.cron}' ({view.timezone})" if view.cron else "no schedule"
    typer.echo(
        f"activated {workflow}/{client} v{view.version}: {when}, release {view.release}, "
        f"deployment {view.deployment_id}"
    )


def _status_command(action: str) -> Callable[..., None]:
    @clear_errors
    def command(
        workflow: Annotated[str, typer.Argument(help="Workflow slug.")],
        client: Annotated[str, typer.Option(help="Client slug.")],
    ) -> None:
        import services

        view = getattr(services, action)(_settings(), client, workflow)
        typer.echo(f"{workflow}/{client}: {view.status}")

    command.__doc__ = f"{action.capitalize()} a client's workflow."
    return command


app.command("pause")(_status_command("pause"))
app.command("resume")(_status_command("resume"))
app.command("deactivate")(_status_command("deactivate"))


@app.command("list")
@clear_errors
def list_cmd(client: Annotated[str | None, typer.Option(help="Only this client.")] = None) -> None:
    """List activations."""
    from services import list_activations

    for a in list_activations(_settings(), client):
        typer.echo(
            f"{a.workflow}/{a.client}\t{a.status}\tv{a.version}\t{a.cron or '-'}\t{a.timezone}"
        )


@app.command("workflows")
def workflows_cmd() -> None:
    """List the catalog of prebuilt workflows."""
    from flows.catalog import list_workflows

    for m in list_workflows():
        typer.echo(f"{m.slug}\tv{m.version}\t{m.title}\t{','.join(m.triggers)}")


@app.command("run")
@clear_errors
def run_cmd(
    workflow: Annotated[str, typer.Argument(help="Workflow slug.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
    follow: Annotated[bool, typer.Option(help="Stream logs until the run ends.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to follow before giving up.")] = 900,
) -> None:
    """Start a run of the client's deployment now and follow it."""
    from deployments.runs import follow_run, start_run

    _settings()
    run = start_run(workflow, client)
    typer.echo(f"started flow run {run.name} ({run.id})")
    if not follow:
        return
    state = follow_run(run.id, typer.echo, timeout=timeout)
    typer.echo(f"flow run {run.name} finished: {state}")
    if state != "COMPLETED":
        raise typer.Exit(1)


# ---- platform --------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply platform DB migrations."""
    _settings()
    typer.echo("platform database is up to date")


@app.command("up")
def up_cmd() -> None:
    """Run the embedded platform (Prefect server, workers, gateway, portal, and the demo unless
    AGENCY_DEMO=false). Ctrl-C stops everything."""
    from agency.settings import Settings
    from cli.stack import run_stack

    # the environment and defaults only: a previous stack's settings file is not carried over
    raise typer.Exit(run_stack(Settings.without_stack_file()))


from cli.commands.spec import spec_app  # noqa: E402 - command modules register below

app.add_typer(spec_app, name="spec")

from cli.commands.vault import vault_app  # noqa: E402

app.add_typer(vault_app, name="vault")

from cli.commands.gateway import register as _register_gateway  # noqa: E402

_register_gateway(app)

from cli.commands.portal import register as _register_portal  # noqa: E402

_register_portal(app)

from cli.commands.nodes import nodes_app  # noqa: E402

app.add_typer(nodes_app, name="nodes")

from cli.commands.worker import register as _register_worker  # noqa: E402

_register_worker(app)

from cli.commands.approvals import approvals_app  # noqa: E402

app.add_typer(approvals_app, name="approvals")

from cli.commands.connections import connections_app  # noqa: E402

app.add_typer(connections_app, name="connections")

from cli.commands.exporter import register as _register_exporter  # noqa: E402

_register_exporter(app)

from cli.commands.usage import usage_app  # noqa: E402

app.add_typer(usage_app, name="usage")

from cli.commands.demo import demo_app  # noqa: E402

app.add_typer(demo_app, name="demo")

from cli.commands.docs import register as _register_docs  # noqa: E402

_register_docs(app)

from cli.commands.release import release_app, rollback_cmd, rollout_cmd  # noqa: E402

app.add_typer(release_app, name="release")
app.command("rollout")(rollout_cmd)
app.command("rollback")(rollback_cmd)

from cli.commands.chains import chains_app  # noqa: E402

app.add_typer(chains_app, name="chains")

from cli.commands.notifications import notifications_app  # noqa: E402

app.add_typer(notifications_app, name="notifications")


def main() -> None:
    """Console entry point: point Prefect at the platform's server unless told otherwise."""
    settings = get_settings()
    if "PREFECT_API_URL" not in os.environ:
        # the embedded stack's API: its auth string is in the platform home (``agency up``)
        os.environ["PREFECT_API_URL"] = f"http://{settings.api_host}:{settings.api_port}/api"
        auth = settings.home / AUTH_FILE
        if "PREFECT_API_AUTH_STRING" not in os.environ and auth.is_file():
            os.environ["PREFECT_API_AUTH_STRING"] = auth.read_text().strip()
    app()


if __name__ == "__main__":
    main()
