"""Importing Inngest Workflow Kit instances with the Kit's meaning, and running them on the real
Prefect server: the five stub actions with the inputs the Kit's examples give them, units,
conditional edges, refs, the shapes the Kit's engine refuses, and errors located in the
instance itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agency.errors import SpecInvalid
from blocks import save_credential
from cli.main import app
from flows.spec.kit import import_kit, import_kit_text
from flows.spec_runner import build_flow, load_spec
from tests.fixtures.http_server import HttpServer

STUBS: dict[str, Any] = {
    "name": "Order follow-up",
    "actions": [
        {"id": "1", "kind": "log_message", "inputs": {"message": "order !ref($.event.data.id)"}},
        {"id": "2", "kind": "delay", "inputs": {"duration": 500}},
        {"id": "3", "kind": "http_request", "inputs": {"url": "BASE/orders/!ref($.event.data.id)"}},
        {"id": "4", "kind": "transform_data", "inputs": {"data": "!ref($.state.3.body)"}},
        {"id": "5", "kind": "notify", "name": "Tell ops", "inputs": {"channel": "#ops"}},
    ],
    "edges": [
        {"from": "$source", "to": "1"},
        {"from": "1", "to": "2"},
        {"from": "2", "to": "3"},
        {"from": "3", "to": "4"},
        {"from": "4", "to": "5"},
    ],
}


def _with_base(instance: dict[str, Any], http_server: HttpServer) -> dict[str, Any]:
    base = http_server.url("").rstrip("/")
    return json.loads(json.dumps(instance).replace("BASE", base))


def _problems(instance: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecInvalid) as exc:
        import_kit_text(json.dumps(instance, indent=1), "kit.json")
    return exc.value.problems


@pytest.mark.usefixtures("prefect_server")
def test_the_five_stub_actions_run_with_the_kits_meaning(
    http_server: HttpServer, client_slug: str
) -> None:
    spec = import_kit(_with_base(STUBS, http_server))
    assert [(n.id, n.node) for n in spec.nodes] == [
        ("log_message_1", "log_message"),
        ("delay_2", "delay"),
        ("http_request_3", "http_request"),
        ("transform_data_4", "transform"),
        ("notify_5", "notify"),
    ]
    assert spec.nodes[1].params == {"seconds": 0.5}  # the Kit's duration is milliseconds
    assert {a: (b.kind, b.name) for a, b in spec.credentials.items()} == {
        "channel_ops": ("slack_webhook", "ops")
    }

    http_server.respond("/orders/A-7", {"total": 42.5, "note": "{{ not a template }}"})
    http_server.respond("/ops", {"ok": True})
    save_credential(client_slug, "slack_webhook", "ops", {"url": http_server.url("/ops")})
    result = build_flow(spec)(client=client_slug, event={"data": {"id": "A-7"}})

    assert all(v["status"] == "completed" for v in result.values())
    assert result["log_message_1"]["output"]["message"] == "order A-7"
    assert result["delay_2"]["output"]["waited_seconds"] >= 0.5
    assert len(http_server.requests_to("/orders/A-7")) == 1
    assert result["transform_data_4"]["output"]["value"] == {
        "total": 42.5,
        "note": "{{ not a template }}",
    }
    [sent] = http_server.requests_to("/ops")
    assert sent.json()["text"] == "Tell ops"


def test_delay_units_and_refused_durations() -> None:
    def delay(duration: Any) -> dict[str, Any]:
        return {
            "actions": [{"id": "w", "kind": "delay", "inputs": {"duration": duration}}],
            "edges": [{"from": "$source", "to": "w"}],
        }

    assert import_kit(delay(5000)).nodes[0].params == {"seconds": 5.0}
    assert import_kit(delay("!ref($.event.wait_ms)")).nodes[0].params == {
        "seconds": "{{ (inputs.wait_ms) / 1000 }}"
    }
    [problem] = _problems(delay(3_600_001))
    assert problem.startswith("kit.json:7: actions[0].inputs.duration: duration must be 0 to")
    assert "milliseconds" in problem


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(
    ("vip", "taken", "skipped"), [(True, "vip", "plain"), (False, "plain", "vip")]
)
def test_conditional_edges_become_conditions(
    vip: bool, taken: str, skipped: str, client_slug: str
) -> None:
    instance = {
        "name": "Branch",
        "actions": [
            {"id": "check", "kind": "transform_data", "inputs": {"data": "!ref($.event.data)"}},
            {
                "id": "vip",
                "kind": "log_message",
                "inputs": {"message": "VIP !ref($.state.check.name)"},
            },
            {"id": "plain", "kind": "log_message", "inputs": {"message": "plain"}},
        ],
        "edges": [
            {"from": "$source", "to": "check"},
            {
                "from": "check",
                "to": "vip",
                "conditional": {"type": "if", "ref": "!ref($.output.vip)"},
            },
            {
                "from": "check",
                "to": "plain",
                "conditional": {"type": "else", "ref": "!ref($.output.vip)"},
            },
        ],
    }
    spec = import_kit(instance)
    assert all(e.when for e in spec.edges)
    result = build_flow(spec)(client=client_slug, event={"data": {"vip": vip, "name": "Ada"}})
    assert result[taken]["status"] == "completed"
    assert result[skipped]["status"] == "skipped"
    if vip:
        assert result["vip"]["output"]["message"] == "VIP Ada"


def test_match_edges_compare_values() -> None:
    instance = {
        "actions": [
            {"id": "a", "kind": "transform_data", "inputs": {"data": "!ref($.event.data)"}},
            {"id": "b", "kind": "log_message", "inputs": {"message": "gold"}},
        ],
        "edges": [
            {"from": "$source", "to": "a"},
            {
                "from": "a",
                "to": "b",
                "conditional": {"type": "match", "ref": "!ref($.output.tier)", "value": "gold"},
            },
        ],
    }
    [edge] = import_kit(instance).edges
    assert edge.when == (
        '(nodes.a.output.value.tier) is defined and (nodes.a.output.value.tier) == "gold"'
    )


def test_refused_shapes_are_located_in_the_instance() -> None:
    instance = {
        "actions": [
            {"id": "1", "kind": "send_sms", "inputs": {}},
            {"id": "2", "kind": "log_message", "inputs": {"message": "!ref($.secrets.key)"}},
            {"id": "3", "kind": "log_message", "inputs": {"message": "x", "colour": "red"}},
            {"id": "4", "kind": "log_message", "inputs": {"message": "never reached"}},
        ],
        "edges": [
            {"from": "$source", "to": "1"},
            {"from": "$source", "to": "9"},
            {"from": "1", "to": "2"},
            {"from": "2", "to": "3"},
        ],
    }
    problems = _problems(instance)
    assert [p.split(" — ")[0] for p in problems] == [
        "kit.json:5: actions[0].kind: unknown Workflow Kit kind 'send_sms'",
        "kit.json:12: actions[1].inputs.message: !ref($.secrets.key): refs read $.event, "
        "$.state or (in a conditional edge) $.output",
        "kit.json:20: actions[2].inputs.colour: input 'colour' of Kit action 'log_message' "
        "has no counterpart here",
        "kit.json:23: actions[3]: action '4' has no path from $source and would never run",
        "kit.json:36: edges[1]: edge $source -> 9 references an unknown action: 9",
    ]
    assert "supported: delay, http_request, log_message, notify, transform_data" in problems[0]


def test_no_start_and_cycles_are_refused() -> None:
    no_start = {
        "actions": [{"id": "a", "kind": "log_message", "inputs": {"message": "x"}}],
        "edges": [],
    }
    assert _problems(no_start) == [
        "kit.json:11: edges: no edge from $source: the workflow has no starting action"
    ]
    cycle = {
        "actions": [
            {"id": "a", "kind": "log_message", "inputs": {"message": "x"}},
            {"id": "b", "kind": "log_message", "inputs": {"message": "y"}},
        ],
        "edges": [
            {"from": "$source", "to": "a"},
            {"from": "a", "to": "b"},
            {"from": "b", "to": "a"},
        ],
    }
    assert any("cycle between nodes" in p for p in _problems(cycle))


def test_catalog_problems_point_at_the_kit_input() -> None:
    instance = {
        "actions": [
            {"id": "early", "kind": "transform_data", "inputs": {"data": "!ref($.state.late.x)"}},
            {"id": "late", "kind": "http_request", "inputs": {"url": "ftp://nope"}},
        ],
        "edges": [{"from": "$source", "to": "early"}, {"from": "early", "to": "late"}],
    }
    problems = _problems(instance)
    assert problems[0].startswith(
        "kit.json:7: actions[0].inputs.data: bad template reference "
        "'nodes.late.output.x': node 'late' is not upstream of 'early'"
    )
    assert problems[1].startswith("kit.json:14: actions[1].inputs.url: Value error, url must")
    assert len(problems) == 2


def test_cli_import_kit_writes_a_valid_spec(tmp_path: Path, http_server: HttpServer) -> None:
    source = tmp_path / "kit.json"
    source.write_text(json.dumps(_with_base(STUBS, http_server), indent=1))
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(app, ["spec", "import-kit", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_spec(out).name == "order-follow-up"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**STUBS, "edges": STUBS["edges"][1:]}, indent=1))
    refused = CliRunner().invoke(app, ["spec", "import-kit", str(bad), "-o", str(out)])
    assert refused.exit_code == 2
    assert f"{bad}:41: edges: no edge from $source" in refused.output
