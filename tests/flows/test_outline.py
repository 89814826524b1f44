"""Workflow outlines: every prebuilt flow declares one whose steps name tasks the flow really
runs; a bad outline (unknown step in an edge, a step or task twice) is refused with words naming
it; a spec's outline is its nodes and edges, failure and condition edges included."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from prefect import Task
from pydantic import ValidationError

from flows.catalog import WORKFLOWS
from flows.manifest import WorkflowManifest
from flows.outline import Outline, OutlineEdge, OutlineStep, chain, spec_outline
from flows.spec.model import parse_spec
from flows.spec_catalog import manifest_for

SPEC = """
name: site-watch
nodes:
  - {id: check, node: http_request, params: {url: "https://example.org"},
     description: Check the site}
  - {id: alert, node: log_message, params: {message: down}}
  - {id: record, node: log_message, params: {message: up}}
  - {id: done, node: log_message, params: {message: done}}
edges:
  - {from: check, to: alert, on: failed}
  - {from: check, to: record, when: "nodes.check.output.status < 300"}
  - {from: record, to: done, on: always}
"""


def _steps(*ids: str) -> tuple[OutlineStep, ...]:
    return tuple(OutlineStep(id=i, title=i.capitalize(), task=i) for i in ids)


@pytest.mark.parametrize("slug", sorted(WORKFLOWS))
def test_each_prebuilt_flow_outlines_tasks_it_runs(slug: str) -> None:
    manifest = WORKFLOWS[slug]
    assert manifest.outline is not None, f"{slug} declares no outline"
    module = inspect.getmodule(WORKFLOWS[slug].settings_model)
    source = Path(inspect.getfile(module)).read_text()  # type: ignore[arg-type]
    # the tasks the module calls, however it holds them (imported, with_options, resumable...)
    held = {v.name for v in vars(module).values() if isinstance(v, Task)}
    for step in manifest.outline.steps:
        # a node's runs are named <kind>-<n>; a renamed call sets its own task run name
        renamed = f'task_run_name=f"{step.task}[' in source
        assert step.task in held or renamed, (
            f"{slug}: step {step.id} names task {step.task}, never run"
        )
    # every step is reachable in the picture: one component, edges between known steps
    ids = {s.id for s in manifest.outline.steps}
    touched = {e.source for e in manifest.outline.edges} | {e.to for e in manifest.outline.edges}
    assert touched == ids or len(ids) == 1


def test_an_edge_naming_an_unknown_step_is_refused_with_the_known_steps() -> None:
    with pytest.raises(ValidationError) as caught:
        Outline(steps=_steps("fetch", "send"), edges=(OutlineEdge(source="fetch", to="sned"),))
    message = str(caught.value)
    assert "edge fetch → sned names unknown step 'sned' (known steps: fetch, send)" in message


def test_a_step_or_a_task_declared_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="step 'a' is declared twice"):
        Outline(steps=(*_steps("a"), *_steps("a")))
    twice = (OutlineStep(id="a", title="A", task="llm"), OutlineStep(id="b", title="B", task="llm"))
    with pytest.raises(ValidationError, match="task 'llm' belongs to two steps"):
        Outline(steps=twice)


def test_a_manifest_with_a_bad_outline_is_refused() -> None:
    good = WORKFLOWS["daily_digest"]
    fields = {name: getattr(good, name) for name in ("slug", "title", "description", "version")}
    with pytest.raises(ValidationError, match="names unknown step 'nowhere'"):
        WorkflowManifest(
            **fields,
            entrypoint=good.entrypoint,
            settings_model=good.settings_model,
            outline={
                "steps": [{"id": "a", "title": "A", "task": "a"}],
                "edges": [{"from": "a", "to": "nowhere"}],
            },  # fmt: skip
        )


def test_task_runs_are_matched_to_steps_by_name() -> None:
    outline = Outline(
        steps=(
            OutlineStep(id="fetch", title="Fetch", task="http_request"),
            OutlineStep(id="classify", title="Classify", task="sentiment"),
            OutlineStep(id="enrich", title="Enrich", task="enrich"),
        ),
        edges=chain("fetch", "classify", "enrich"),
    )
    assert outline.step_of("http_request-0") == "fetch"
    assert outline.step_of("http_request-12") == "fetch"
    assert outline.step_of("sentiment[3]") == "classify"
    assert outline.step_of("enrich") == "enrich"
    assert outline.step_of("enrich[2]") == "enrich"
    assert outline.step_of("enrich.failure") == "enrich"
    assert outline.step_of("http_request_batch-0") is None
    assert outline.step_of("enricher") is None
    assert outline.step_of("llm-0") is None


def test_a_specs_outline_is_its_nodes_and_edges() -> None:
    spec, _ = parse_spec(SPEC)
    outline = spec_outline(spec)
    assert [(s.id, s.title, s.task) for s in outline.steps] == [
        ("check", "Check the site", "check"),
        ("alert", "Alert", "alert"),
        ("record", "Record", "record"),
        ("done", "Done", "done"),
    ]
    assert [(e.source, e.to, e.on, e.label) for e in outline.edges] == [
        ("check", "alert", "failed", "if it fails"),
        ("check", "record", "completed", "if nodes.check.output.status < 300"),
        ("record", "done", "always", "always"),
    ]
    assert manifest_for(spec).outline == outline
