"""Spec validation: one precise, located message per problem; `agency spec validate` exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.errors import SpecInvalid
from cli.main import app
from flows.spec_runner import load_spec, validate_file

GOOD = """\
name: lead-check
version: 1.0.0
inputs: {type: object, properties: {email: {type: string}}, required: [email]}
credentials: {crm: http_auth, openai: openai}
nodes:
  - id: enrich
    node: http_request
    params: {url: "https://crm.test/people?email={{ inputs.email }}", auth: {credential: crm}}
  - id: score
    node: llm
    params: {prompt: "Score {{ nodes.enrich.output.body }}", output: json, credential: openai}
  - id: per_item
    node: llm
    map: "{{ nodes.enrich.output.body['items'] }}"
    params: {prompt: "Summarise {{ item }}", credential: openai}
edges:
  - {from: enrich, to: score}
  - {from: enrich, to: per_item, when: "nodes.enrich.output.status == 200"}
"""

BAD = """\
name: broken
credentials: {openai: openai}
nodes:
  - id: fetch
    node: http_request
    params: {urll: "https://x.test"}
  - id: think
    node: telepathy
    params: {}
  - id: write
    node: llm
    params: {prompt: "{{ nodes.later.output.text }} {{ secrets.key }}", credential: slack}
  - id: later
    node: llm
    params: {prompt: "{{ item }}", credential: openai}
  - id: a
    node: http_request
    params: {url: "https://a.test"}
  - id: b
    node: http_request
    params: {url: "https://b.test", timeout_seconds: "soon"}
edges:
  - {from: fetch, to: write}
  - {from: write, to: ghost}
  - {from: a, to: b}
  - {from: b, to: a}
"""


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_spec_is_valid(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD))
    assert [n.id for n in spec.nodes] == ["enrich", "score", "per_item"]


def test_every_problem_reported_with_location(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    problems = validate_file(path)
    text = "\n".join(problems)
    expected = [
        f"{path}:6: nodes[0].params.urll: unknown param 'urll' for node 'http_request'",
        f"{path}:6: nodes[0].params: missing param 'url' for node 'http_request'",
        f"{path}:8: nodes[1].node: Unknown node kind 'telepathy'",
        "nodes[2].params.credential: undeclared credential 'slack'",
        "bad template reference 'nodes.later.output.text': node 'later' is not upstream of 'write'",
        "bad template reference 'secrets.key'",
        "nodes[3].params.prompt: bad template reference 'item': only a node with `map`",
        f"{path}:24: edges[1].to: dangling edge: no node 'ghost'",
        "edges: cycle between nodes: a, b",
        "nodes[5].params.timeout_seconds: Input should be a valid number",
    ]
    for fragment in expected:
        assert fragment in text, f"missing {fragment!r} in:\n{text}"
    assert len(problems) == len(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nnodes: [\n", "not valid YAML/JSON"),
        ("- just a list\n", "a spec must be a mapping"),
        (
            "name: x\nnodes:\n  - {id: a, node: http_request, params: 5}\n",
            "nodes[0].params: Input should be a valid dictionary",
        ),
        (
            '{"name": "x", "nodes": [{"id": "a", "node": "http_request", '
            '"params": {"url": "{{ inputs.email"}}]}',
            "template syntax error",
        ),
    ],
)
def test_malformed_specs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecInvalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_spec(_write(tmp_path, text))


def test_cli_validate_prints_all_and_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["spec", "validate", str(_write(tmp_path, BAD))])
    assert result.exit_code == 2
    assert result.output.count("\n") >= 10 and "dangling edge" in result.output
    good = CliRunner().invoke(app, ["spec", "validate", str(_write(tmp_path, GOOD, "g.yaml"))])
    assert good.exit_code == 0 and "valid" in good.output


def test_registered_spec_becomes_a_catalog_workflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.flows import load_flow_from_entrypoint

    from agency.settings import get_settings
    from flows.catalog import get_workflow, list_workflows
    from flows.spec_catalog import register_spec

    monkeypatch.setenv("AGENCY_SPEC_DIR", str(tmp_path / "specs"))
    get_settings.cache_clear()
    try:
        manifest = register_spec(_write(tmp_path, GOOD))
        assert manifest.slug == "lead-check" and manifest.version == "1.0.0"
        assert get_workflow("lead-check").entrypoint == "flows/spec_catalog.py:spec_lead_check"
        assert "lead-check" in [m.slug for m in list_workflows()]
        assert {(c.kind, c.name) for c in manifest.credentials} == {
            ("http_auth", "crm"),
            ("openai", "openai"),
        }
        settings = manifest.validate_settings({"email": "a@b.test"})
        assert settings.model_dump() == {"email": "a@b.test"}
        flow = load_flow_from_entrypoint(str(Path.cwd() / manifest.entrypoint))
        assert flow.name == "lead-check"
        with pytest.raises(SpecInvalid):
            register_spec(_write(tmp_path, BAD, "bad.yaml"))
        assert [m.slug for m in list_workflows()].count("broken") == 0
    finally:
        get_settings.cache_clear()
