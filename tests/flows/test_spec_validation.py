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


MIXED = """\
name: Not A Slug
credentials: {llm: {kind: openai}}
nodes:
  - id: fetch
    node: http_request
    params: {url: "https://x.test"}
    retry: 3
  - id: think
    node: telepathy
  - id: write
    node: llm
    params: {prompt: "hi", credential: mail}
edges:
  - {from: fetch, to: think, on: sometimes}
  - {from: think, to: ghost}
  - {from: write, to: nowhere}
"""


def test_schema_and_catalog_problems_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, MIXED)
    problems = validate_file(path)
    expected = [
        f"{path}:1: name: String should match pattern",  # schema
        f"{path}:7: nodes[0].retry: Extra inputs are not permitted",  # schema
        f"{path}:9: nodes[1].node: Unknown node kind 'telepathy'",  # catalog
        f"{path}:12: nodes[2].params.credential: undeclared credential 'mail'",  # catalog
        f"{path}:14: edges[0].on: Input should be 'completed', 'failed' or 'always'",  # schema
        f"{path}:15: edges[1].to: dangling edge: no node 'ghost'",  # catalog
        f"{path}:16: edges[2].to: dangling edge: no node 'nowhere'",  # catalog
    ]
    assert len(problems) == 7, "\n".join(problems)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), f"{problem!r} does not start with {start!r}"
    assert all(" — " in p for p in problems)  # each with a fix hint
    with pytest.raises(SpecInvalid) as exc:
        load_spec(path)
    assert exc.value.problems == problems


CREDENTIALS = """\
name: digest
credentials:
  llm: {kind: openai}
  mail: {kind: smtp}
  crm: http_auth            # shorthand: the client's http_auth credential named crm
nodes:
  - {id: fetch, node: http_request, params: {url: "https://crm.test", credential: crm}}
  - {id: summary, node: llm, params: {prompt: "Sum up {{ nodes.fetch.output.body }}"}}
  - id: send
    node: send_email
    params: {to: ["a@b.test"], subject: "Digest", text: "{{ nodes.summary.output.text }}",
             credential: mail}
edges: [{from: fetch, to: summary}, {from: summary, to: send}]
"""


def test_credentials_bind_by_kind_and_name(tmp_path: Path) -> None:
    from flows.spec.credentials import bind_credential
    from flows.spec_catalog import manifest_for
    from nodes.catalog import get_node

    spec = load_spec(_write(tmp_path, CREDENTIALS))
    assert {a: (b.kind, b.name) for a, b in spec.credentials.items()} == {
        "llm": ("openai", "default"),
        "mail": ("smtp", "default"),
        "crm": ("http_auth", "crm"),
    }
    assert {(c.kind, c.name) for c in manifest_for(spec).credentials} == {
        ("openai", "default"),
        ("smtp", "default"),
        ("http_auth", "crm"),
    }
    # the llm node names no credential: the spec's only openai binding is used
    summary, send = spec.node("summary"), spec.node("send")
    assert bind_credential(spec, get_node("llm"), summary.params)["credential"] == "default"
    assert bind_credential(spec, get_node("send_email"), send.params)["credential"] == "default"


def test_connected_accounts_bind_as_kind_and_name(tmp_path: Path) -> None:
    from flows.spec.credentials import bind_credential
    from nodes.catalog import get_node

    text = CREDENTIALS.replace("mail: {kind: smtp}", "mail: {kind: google}").replace(
        "crm: http_auth ", "crm: {kind: hubspot}"
    )
    spec = load_spec(_write(tmp_path, text))
    fetch, send = spec.node("fetch"), spec.node("send")
    assert bind_credential(spec, get_node("send_email"), send.params)["credential"] == (
        "google/default"
    )
    assert bind_credential(spec, get_node("http_request"), fetch.params)["credential"] == (
        "hubspot/default"
    )


def test_credential_mistakes_are_precise(tmp_path: Path) -> None:
    text = CREDENTIALS.replace("llm: {kind: openai}", "llm: {kind: opnai, nam: x}")
    problems = validate_file(_write(tmp_path, text))
    assert [p.split(": ", 2)[1:] for p in problems][:2] == [
        [
            "credentials.llm.nam",
            "Extra inputs are not permitted — remove it (see docs/specs.md "
            "for the keys each part takes)",
        ],
        ["credentials.llm.kind", problems[1].split(": ", 2)[2]],
    ]
    assert "unknown credential kind 'opnai'" in problems[1]
    two = CREDENTIALS.replace("mail: {kind: smtp}", "mail: {kind: smtp}\n  ai2: {kind: openai}")
    [ambiguous] = validate_file(_write(tmp_path, two, "two.yaml"))
    assert "nodes[1].params: missing param 'credential' for node 'llm'" in ambiguous
    assert "name one of ai2, llm in params.credential" in ambiguous
