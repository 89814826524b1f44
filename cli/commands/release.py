"""``agency release create | list``: immutable releases of a workflow's code."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.commands._common import clear_errors, ready_settings

release_app = typer.Typer(help="Releases of a workflow's code.", no_args_is_help=True)


@release_app.command("create")
@clear_errors
def create_cmd(
    workflow: Annotated[str, typer.Argument(help="Workflow slug, e.g. daily_digest.")],
    from_worktree: Annotated[
        bool,
        typer.Option(
            "--from-worktree",
            help="Take the files on disk, uncommitted changes included (trials and tests).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the release as one JSON object.")
    ] = False,
) -> None:
    """Snapshot the workflow's code at git HEAD into the release store (refuses uncommitted
    changes to the files it needs); the same code gives the same release."""
    from services.releases import create_release

    source = "worktree" if from_worktree else "git"
    made = create_release(ready_settings(), workflow, source=source, actor="cli")
    if as_json:
        fields = ("workflow", "digest", "short", "workflow_version", "source", "commit", "files")
        typer.echo(json.dumps({name: getattr(made, name) for name in fields}))
        return
    took = f" in {made.seconds:.2f}s" if made.seconds is not None else " (already stored)"
    typer.echo(
        f"release {made.short} of {made.workflow} {made.workflow_version}: "
        f"{made.files} files, {made.size_bytes / 1024:.0f} KiB, commit "
        f"{(made.commit or '-')[:12]}{took}"
    )


@release_app.command("list")
@clear_errors
def list_cmd(
    workflow: Annotated[str | None, typer.Argument(help="Only this workflow.")] = None,
) -> None:
    """Releases, newest first, with the clients pinned to each."""
    from services.releases import list_releases, pinned_clients

    settings = ready_settings()
    rows = list_releases(settings, workflow)
    if not rows:
        typer.echo("no releases")
        return
    pins = pinned_clients(settings)
    for r in rows:
        clients = ", ".join(pins.get(r.id, [])) or "-"
        typer.echo(
            f"{r.short}  {r.workflow:<20} {r.workflow_version:<8} {r.source:<8} "
            f"{(r.commit or '-')[:12]:<12} {r.created_at:%Y-%m-%d %H:%M}  clients: {clients}"
        )


ROLLOUT_ACTIONS = ("status", "halt", "resume", "undo", "tick")


@clear_errors
def rollout_cmd(
    first: Annotated[
        str, typer.Argument(help="A workflow slug, or one of: status, halt, resume, undo, tick.")
    ],
    second: Annotated[
        str | None,
        typer.Argument(help="The release (digest prefix or version), or the workflow."),
    ] = None,
    clients: Annotated[
        str | None, typer.Option("--clients", help="Comma-separated client slugs.")
    ] = None,
    canary: Annotated[
        str | None, typer.Option("--canary", help="Share of clients to try first, e.g. 10%.")
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every client at once.")] = False,
    min_runs: Annotated[int, typer.Option(help="Canary runs to wait for.")] = 5,
    max_hours: Annotated[float, typer.Option(help="Or hours to wait.")] = 24.0,
    margin: Annotated[
        float, typer.Option(help="Halt when the canary's failure rate is worse by more.")
    ] = 0.1,
) -> None:
    """Roll a release out: `agency rollout <workflow> <release> --clients a,b | --canary N% |
    --all`; `agency rollout status|halt|resume|undo <workflow>`; `agency rollout tick`."""
    from services import rollout

    settings = ready_settings()
    if first in ROLLOUT_ACTIONS:
        if first == "tick":
            views = rollout.tick(settings, actor="cli")
        elif first == "status":
            views = rollout.rollout_status(settings, second)[:10]
        else:
            if second is None:
                raise typer.BadParameter(f"`agency rollout {first}` needs the workflow.")
            views = [getattr(rollout, first)(settings, second, actor="cli")]
        for v in views:
            typer.echo(_rollout_line(v))
        if not views:
            typer.echo("nothing to report")
        return
    if second is None:
        raise typer.BadParameter("Name the release to roll out.")
    percent = None
    if canary is not None:
        try:
            percent = int(canary.rstrip("%"))
        except ValueError:
            raise typer.BadParameter("--canary takes a share like 10%.") from None
    view = rollout.start_rollout(
        settings,
        first,
        second,
        clients=[c.strip() for c in clients.split(",") if c.strip()] if clients else None,
        canary_percent=percent,
        everyone=everyone,
        min_runs=min_runs,
        max_hours=max_hours,
        margin=margin,
        actor="cli",
    )
    typer.echo(_rollout_line(view))


def _rollout_line(v: object) -> str:
    from services.rollout import RolloutView

    assert isinstance(v, RolloutView)
    figures = ", ".join(
        f"{k} {v.detail[k]}"
        for k in ("canary_runs", "canary_failed", "baseline_runs", "baseline_failed")
        if k in v.detail
    )
    refused = v.detail.get("refused")
    return (
        f"rollout {v.id} {v.workflow}: {v.mode} {v.from_release or '-'} → {v.to_release} "
        f"[{v.status}] clients: {', '.join(v.clients) or '-'}"
        + (f" ({figures})" if figures else "")
        + (f"; refused: {refused}" if refused else "")
    )


@clear_errors
def rollback_cmd(
    workflow: Annotated[str, typer.Argument(help="Workflow slug.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
    version: Annotated[int, typer.Option(help="Activation version to restore.")],
) -> None:
    """Restore the release and settings (cron, time zone) of an earlier activation version."""
    from services import rollback

    view = rollback(ready_settings(), client, workflow, version, actor="cli")
    typer.echo(
        f"rolled {workflow}/{client} back to version {version}: now v{view.version}, "
        f"release {view.release}"
    )
