"""Run declarative workflow specs (YAML or JSON DAGs) as Prefect flows.

- :func:`load_spec` parses and validates a file (``SpecInvalid`` lists every problem).
- :func:`build_flow` turns a spec into a Prefect flow named by the spec, with parameters
  ``client``, ``settings`` and ``event`` (a webhook payload); inputs = settings + event. A batch
  run gets ``events`` instead: each event goes through the DAG on its own (one fails alone) and
  its outcome is recorded against its delivery.
- :data:`run_spec` runs any spec passed as a parameter (``agency spec run``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
from prefect import Flow, flow

from agency.errors import SpecInvalid
from flows.batch import each_event, record_outcomes
from flows.spec.engine import SpecRun
from flows.spec.model import WorkflowSpec, parse_spec, read_spec_text, spec_to_dict
from flows.spec.validate import check_text, ensure_valid, ensure_valid_text


def load_spec(path: str | Path) -> WorkflowSpec:
    """Parse and validate a spec file; raise ``SpecInvalid`` with all problems."""
    return ensure_valid_text(read_spec_text(Path(path)), str(path))


def validate_file(path: str | Path) -> list[str]:
    """Every problem in a spec file, schema and catalog together (empty list when valid)."""
    try:
        text = read_spec_text(Path(path))
    except SpecInvalid as exc:
        return exc.problems
    return check_text(text, str(path))[1]


def check_inputs(spec: WorkflowSpec, inputs: dict[str, Any]) -> None:
    """Validate run inputs against the spec's ``inputs`` JSON schema."""
    if not spec.inputs:
        return
    errors = sorted(jsonschema.Draft202012Validator(spec.inputs).iter_errors(inputs), key=str)
    if errors:
        raise SpecInvalid(
            [f"inputs{''.join(f'.{p}' for p in e.absolute_path)}: {e.message}" for e in errors]
        )


def execute_spec(
    spec: WorkflowSpec, client: str, inputs: dict[str, Any], scope: str = ""
) -> dict[str, Any]:
    """Run ``spec`` inside the current flow run; return each node's status and output.

    ``scope`` names the run's nodes apart when one flow run executes the spec several times
    (one event of a batch each: ``e0.``, ``e1.`` ...)."""
    check_inputs(spec, inputs)
    return SpecRun(spec, client, inputs, scope).execute()


def build_flow(spec: WorkflowSpec) -> Flow[..., dict[str, Any]]:
    """A Prefect flow named ``spec.name`` that runs the spec (validated here, once)."""
    ensure_valid(spec, source=spec.name)

    def run(
        client: str,
        settings: dict[str, Any] | None = None,
        event: dict[str, Any] | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        base = settings or {}
        if events is None:
            return execute_spec(spec, client, {**base, **(event or {})})
        # a batch (adaptive or batch webhook): each event through the DAG on its own
        place = iter(range(len(events)))
        results = each_event(
            events, lambda one: execute_spec(spec, client, {**base, **one}, f"e{next(place)}.")
        )
        record_outcomes(results)
        return {"events": len(events), "failed": results.failed, "results": results.values}

    run.__doc__ = spec.description or f"Workflow spec {spec.name} v{spec.version}."
    return flow(run, name=spec.name, version=spec.version, retries=spec.retries, log_prints=True)


@flow(name="spec_runner", log_prints=True)
def run_spec(
    spec: dict[str, Any], client: str, inputs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate and run a spec given as a dict."""
    import yaml

    parsed = ensure_valid_text(yaml.safe_dump(spec), str(spec.get("name", "<spec>")))
    return execute_spec(parsed, client, inputs or {})


__all__ = [
    "build_flow",
    "check_inputs",
    "execute_spec",
    "load_spec",
    "parse_spec",
    "run_spec",
    "spec_to_dict",
    "validate_file",
]
