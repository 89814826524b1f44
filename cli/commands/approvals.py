"""``agency approvals``: list a client's runs waiting for a reviewer, and answer one."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.commands._common import ready_settings

approvals_app = typer.Typer(help="Human approval requests.", no_args_is_help=True)
_settings = ready_settings


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


@approvals_app.command("list")
def list_cmd(client: Annotated[str, typer.Option(help="Client slug.")]) -> None:
    """One line per pending request: run id, workflow, node, kind, expiry, message."""
    from agency.errors import AgencyError
    from services.approvals import list_pending_approvals

    try:
        views = list_pending_approvals(_settings(), client)
    except AgencyError as exc:
        raise _fail(str(exc)) from None
    for v in views:
        expires = v.expires_at.isoformat(timespec="seconds") if v.expires_at else "-"
        kind = f"choice({'|'.join(v.choices)})" if v.kind == "choice" else v.kind
        typer.echo(f"{v.flow_run_id}\t{v.workflow}\t{v.node}\t{kind}\t{expires}\t{v.message}")


@approvals_app.command("answer")
def answer_cmd(
    flow_run_id: Annotated[str, typer.Argument(help="Flow run id from `approvals list`.")],
    client: Annotated[str, typer.Option(help="Client slug.")],
    approve: Annotated[
        bool | None, typer.Option("--approve/--reject", help="For approve/reject requests.")
    ] = None,
    text: Annotated[str | None, typer.Option(help="For text requests.")] = None,
    choice: Annotated[str | None, typer.Option(help="For choice requests.")] = None,
    comment: Annotated[str | None, typer.Option(help="Optional remark.")] = None,
    actor: Annotated[str, typer.Option(help="Who answers (audit log).")] = "cli",
) -> None:
    """Answer one request; the paused run resumes with the answer."""
    from agency.errors import AgencyError
    from services.approvals import answer_approval

    try:
        answer_approval(
            _settings(),
            client,
            flow_run_id,
            approved=approve,
            text=text,
            choice=choice,
            comment=comment,
            actor=actor,
        )
    except AgencyError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"answered {flow_run_id}; the run resumes")
