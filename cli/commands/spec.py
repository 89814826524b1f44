"""``agency spec``: validate, run and draft declarative workflow specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

spec_app = typer.Typer(help="Declarative workflow specs (YAML/JSON DAGs).", no_args_is_help=True)


@spec_app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="Spec file (.yaml/.json).")]) -> None:
    """Print every problem with its location; exit 2 when there is any."""
    from flows.spec_runner import validate_file

    problems = validate_file(path)
    for problem in problems:
        typer.echo(problem)
    if problems:
        typer.echo(f"{len(problems)} problem(s)", err=True)
        raise typer.Exit(2)
    typer.echo(f"{path}: valid")


@spec_app.command("run")
def run(
    path: Annotated[Path, typer.Argument(help="Spec file.")],
    client: Annotated[str, typer.Option(help="Client slug the run works for.")],
    inputs: Annotated[str, typer.Option(help="Inputs as a JSON object.")] = "{}",
) -> None:
    """Run a spec now, in this process, against the configured Prefect API."""
    from agency.errors import AgencyError
    from flows.spec_runner import build_flow, load_spec

    try:
        spec = load_spec(path)
        data = json.loads(inputs)
        result = build_flow(spec)(client=client, event=data)
    except (AgencyError, json.JSONDecodeError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    for node_id, outcome in result.items():
        error = outcome.get("error")
        detail = f"\t{error['type']}: {error['message']}" if error else ""
        failed_items = len(outcome.get("failed") or [])
        detail += f"\t{failed_items} item(s) failed" if failed_items else ""
        typer.echo(f"{node_id}\t{outcome['status']}{detail}")


@spec_app.command("import-kit")
def import_kit_cmd(
    path: Annotated[Path, typer.Argument(help="Workflow Kit instance (JSON).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Spec file to write.")],
) -> None:
    """Convert an Inngest Workflow Kit instance into a validated spec file."""
    import yaml

    from agency.errors import AgencyError
    from flows.spec.kit import import_kit_text
    from flows.spec.model import spec_to_dict

    try:
        spec = import_kit_text(path.read_text(), str(path))
    except (AgencyError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    output.write_text(yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
    typer.echo(f"wrote {output} ({len(spec.nodes)} nodes)")


@spec_app.command("draft")
def draft_cmd(
    request: Annotated[str, typer.Argument(help="What the workflow should do, in English.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Spec file to write.")] = Path(
        "workflow.yaml"
    ),
) -> None:
    """Draft a spec with the configured model (AGENCY_DRAFT_BASE_URL / _API_KEY / _MODEL)."""
    import openai
    import yaml

    from agency.errors import AgencyError
    from agency.settings import get_settings
    from flows.spec.draft import draft_spec
    from flows.spec.model import spec_to_dict

    settings = get_settings()
    if settings.draft_api_key is None:
        typer.secho(
            "error: set AGENCY_DRAFT_API_KEY (and AGENCY_DRAFT_BASE_URL for a "
            "non-OpenAI endpoint) to draft specs",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    client = openai.OpenAI(
        api_key=settings.draft_api_key.get_secret_value(),
        base_url=settings.draft_base_url,
        max_retries=2,
    )
    try:
        spec = draft_spec(request, client, settings.draft_model)
    except AgencyError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    output.write_text(yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
    typer.echo(f"wrote {output}: {spec.name} with {len(spec.nodes)} nodes")
