"""`agency spec draft` against the local OpenAI-compatible endpoint (it stands in for a real
model, which cannot run here): a valid answer, an invalid-then-repaired one, a hopeless one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.settings import get_settings
from cli.main import app
from flows.spec_runner import load_spec
from tests.fixtures.llm_server import LlmServer

VALID = {
    "name": "uptime-check",
    "version": "1.0.0",
    "description": "Check a site, alert Slack.",
    "credentials": {"slack": "slack_webhook"},
    "triggers": ["cron"],
    "default_cron": "*/5 * * * *",
    "nodes": [
        {"id": "check", "node": "http_request", "params": {"url": "https://example.com"}},
        {
            "id": "alert",
            "node": "notify",
            "params": {
                "text": "example.com is down ({{ nodes.check.output.status }})",
                "credential": "slack",
            },
        },
    ],
    "edges": [{"from": "check", "to": "alert", "when": "nodes.check.output.status >= 400"}],
}
INVALID = {
    **VALID,
    "nodes": [VALID["nodes"][0], {"id": "alert", "node": "notify", "params": {"txt": "down"}}],
}
REQUEST = "Check example.com every 5 minutes; if down, alert Slack"


@pytest.fixture
def draft_env(llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AGENCY_DRAFT_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AGENCY_DRAFT_API_KEY", llm_server.api_key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _draft(tmp_path: Path) -> tuple[int, str, Path]:
    out = tmp_path / "drafted.yaml"
    result = CliRunner().invoke(app, ["spec", "draft", REQUEST, "-o", str(out)])
    return result.exit_code, result.output, out


@pytest.mark.usefixtures("draft_env")
def test_valid_answer_is_written(llm_server: LlmServer, tmp_path: Path) -> None:
    llm_server.reply_next(json.dumps(VALID))
    code, output, out = _draft(tmp_path)
    assert code == 0, output
    spec = load_spec(out)
    assert spec.name == "uptime-check" and spec.default_cron == "*/5 * * * *"
    [request] = llm_server.chat_requests()
    body = request.body
    assert body["response_format"]["type"] == "json_schema"
    node_enum = body["response_format"]["json_schema"]["schema"]["$defs"]["SpecNode"]["properties"][
        "node"
    ]["enum"]
    assert {"http_request", "notify", "llm"} <= set(node_enum)
    assert REQUEST in body["messages"][-1]["content"]


@pytest.mark.usefixtures("draft_env")
def test_invalid_then_repaired(llm_server: LlmServer, tmp_path: Path) -> None:
    llm_server.reply_next(json.dumps(INVALID))
    llm_server.reply_next(json.dumps(VALID))
    code, output, out = _draft(tmp_path)
    assert code == 0, output
    first, second = llm_server.chat_requests()
    repair = second.body["messages"][-1]["content"]
    assert "unknown param 'txt'" in repair and "missing param 'text'" in repair
    assert load_spec(out).nodes[1].params["credential"] == "slack"


@pytest.mark.usefixtures("draft_env")
def test_hopeless_answer_fails_clearly(llm_server: LlmServer, tmp_path: Path) -> None:
    llm_server.reply_next("I think you should use Zapier.", times=2)
    code, output, out = _draft(tmp_path)
    assert code == 2
    assert "did not produce a valid spec, even after one repair" in output
    assert "not JSON" in output and not out.exists()
    assert len(llm_server.chat_requests()) == 2


@pytest.mark.usefixtures("draft_env")
def test_yaml_answer_with_a_loose_name_is_accepted(llm_server: LlmServer, tmp_path: Path) -> None:
    import yaml

    llm_server.reply_next(yaml.safe_dump({**VALID, "name": "Uptime Check!"}, sort_keys=False))
    code, output, out = _draft(tmp_path)
    assert code == 0, output
    assert load_spec(out).name == "uptime-check"


@pytest.mark.usefixtures("draft_env")
def test_fenced_json_answer_is_accepted(llm_server: LlmServer, tmp_path: Path) -> None:
    llm_server.reply_next("Here is the spec:\n```json\n" + json.dumps(VALID, indent=2) + "\n```\n")
    code, output, out = _draft(tmp_path)
    assert code == 0, output
    assert [n.id for n in load_spec(out).nodes] == ["check", "alert"]


@pytest.mark.usefixtures("draft_env")
def test_repair_turn_lists_every_problem(llm_server: LlmServer, tmp_path: Path) -> None:
    broken = {
        **VALID,
        "nodes": [
            {**VALID["nodes"][0], "retry": 2},  # schema: unknown key
            {"id": "alert", "node": "notify", "params": {"txt": "down", "credential": "pager"}},
        ],
        "edges": [{"from": "check", "to": "alert", "on": "sometimes"}, {"from": "x", "to": "y"}],
    }
    llm_server.reply_next("```yaml\n" + json.dumps(broken) + "\n```")
    llm_server.reply_next(json.dumps(VALID))
    code, output, out = _draft(tmp_path)
    assert code == 0, output
    _, second = llm_server.chat_requests()
    repair = second.body["messages"][-1]["content"]
    for fragment in (
        "nodes[0].retry: Extra inputs are not permitted",
        "unknown param 'txt'",
        "missing param 'text'",
        "undeclared credential 'pager'",
        "edges[0].on: Input should be 'completed', 'failed' or 'always'",
        "edges[1].from: dangling edge: no node 'x'",
        "edges[1].to: dangling edge: no node 'y'",
    ):
        assert fragment in repair, f"{fragment!r} not in repair turn:\n{repair}"
    assert "7 problem(s)" in repair
