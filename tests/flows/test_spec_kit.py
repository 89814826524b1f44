"""Importing an Inngest Workflow Kit instance and running it on the real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.errors import SpecInvalid
from blocks import save_credential
from cli.main import app
from flows.spec.kit import import_kit
from flows.spec.validate import ensure_valid
from flows.spec_runner import build_flow, load_spec
from tests.fixtures.http_server import HttpServer

KIT = {
    "name": "Order follow-up",
    "edges": [
        {"from": "$source", "to": "1"},
        {"from": "1", "to": "2"},
        {"from": "2", "to": "3"},
        {"from": "3", "to": "4"},
        {"from": "4", "to": "5"},
    ],
    "actions": [
        {
            "id": "1",
            "kind": "log_message",
            "name": "Log",
            "inputs": {"message": "order !ref($.event.data.order_id) received"},
        },
        {
            "id": "2",
            "kind": "http_request",
            "name": "Fetch order",
            "inputs": {"url": "BASE/orders", "method": "POST", "body": "!ref($.event.data)"},
        },
        {
            "id": "3",
            "kind": "transform_data",
            "name": "Shape",
            "inputs": {"expression": "body.total", "data": "{{ nodes.http_request_2.output }}"},
        },
        {"id": "4", "kind": "delay", "name": "Wait", "inputs": {"seconds": 0}},
        {
            "id": "5",
            "kind": "notify",
            "name": "Tell Slack",
            "inputs": {"message": "Order total {{ nodes.transform_data_3.output.value }}"},
        },
    ],
}


def _kit(http_server: HttpServer) -> dict[str, object]:
    return json.loads(json.dumps(KIT).replace("BASE", http_server.url("").rstrip("/")))


def test_kit_instance_imports_and_runs(
    http_server: HttpServer, client_slug: str, prefect_server: str
) -> None:
    spec = ensure_valid(import_kit(_kit(http_server)))
    assert [(n.id, n.node) for n in spec.nodes] == [
        ("log_message_1", "log_message"),
        ("http_request_2", "http_request"),
        ("transform_data_3", "transform"),
        ("delay_4", "delay"),
        ("notify_5", "notify"),
    ]
    assert spec.credentials == {"notify": "slack_webhook"}
    assert spec.nodes[1].params["json_body"] == "{{ inputs.data }}"

    http_server.respond("/orders", {"total": 42.5})
    http_server.respond("/slack", {"ok": True})
    save_credential(client_slug, "slack_webhook", "notify", {"url": http_server.url("/slack")})
    result = build_flow(spec)(client=client_slug, event={"data": {"order_id": "A-7"}})
    assert result["log_message_1"]["output"]["message"] == "order A-7 received"
    assert http_server.requests_to("/orders")[0].json() == {"order_id": "A-7"}
    assert http_server.requests_to("/slack")[0].json()["text"] == "Order total 42.5"
    assert all(v["status"] == "completed" for v in result.values())


def test_unsupported_kit_input_is_a_clear_error() -> None:
    bad = {
        "actions": [
            {"id": "1", "kind": "send_sms", "inputs": {}},
            {"id": "2", "kind": "log_message", "inputs": {"message": "!ref($.state.previous)"}},
        ],
        "edges": [{"from": "1", "to": "9"}],
    }
    with pytest.raises(SpecInvalid) as exc:
        import_kit(bad)
    assert exc.value.problems == [
        "actions[0].kind: unknown Workflow Kit kind 'send_sms' (supported: delay, "
        "http_request, log_message, notify, transform_data)",
        "actions[1].inputs.message: only !ref($.event...) references can be imported",
        "edges[0]: dangling edge 1 -> 9",
    ]


def test_cli_import_kit_writes_a_valid_spec(tmp_path: Path, http_server: HttpServer) -> None:
    source = tmp_path / "kit.json"
    source.write_text(json.dumps(_kit(http_server)))
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(app, ["spec", "import-kit", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_spec(out).name == "order-follow-up"
