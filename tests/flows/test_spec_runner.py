"""The spec runner on a real Prefect server against a real HTTP server: branches, `when`,
skips, ordered fan-out, concurrency, durable resume, lifecycle events, runtime errors."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.events.filters import EventFilter, EventResourceFilter

from agency.errors import SpecRuntimeError
from flows.spec.model import parse_spec
from flows.spec_runner import build_flow
from tests.fixtures.http_server import HttpServer, ReceivedRequest, Reply

pytestmark = pytest.mark.usefixtures("prefect_server")


def _spec(text: str, http_server: HttpServer) -> Any:
    spec, _ = parse_spec(text.replace("BASE", http_server.url("").rstrip("/")))
    return spec


def _task_runs(flow_run_id: UUID) -> list[Any]:
    with get_client(sync_client=True) as api:
        return api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


ROUTING = """
name: routing
inputs: {type: object, properties: {threshold: {type: integer}}}
nodes:
  - {id: fetch, node: http_request, params: {url: "BASE/items"}}
  - id: hot
    node: http_request
    params:
      url: "BASE/hot"
      method: POST
      json_body: {score: "{{ nodes.fetch.output.body.score }}"}
  - {id: cold, node: http_request, params: {url: "BASE/cold", method: POST}}
  - {id: after_cold, node: http_request, params: {url: "BASE/after"}}
  - {id: each, node: http_request, map: "{{ nodes.fetch.output.body['items'] }}", concurrency: 2,
     params: {url: "BASE/item", query: {name: "{{ item }}"}}}
edges:
  - {from: fetch, to: hot, when: "nodes.fetch.output.body.score >= inputs.threshold"}
  - {from: fetch, to: cold, when: "nodes.fetch.output.body.score < inputs.threshold"}
  - {from: cold, to: after_cold}
  - {from: fetch, to: each}
"""


def test_branches_skips_and_ordered_fan_out(http_server: HttpServer, client_slug: str) -> None:
    http_server.respond("/items", {"items": ["a", "b", "c", "d", "e"], "score": 90})
    http_server.respond("/hot", {"ok": True})

    def item(req: ReceivedRequest) -> Reply:
        name = req.query["name"][0]
        return Reply(json={"name": name.upper()}, delay=0.3 if name == "a" else 0.0)

    http_server.handle("/item", item)
    spec = _spec(ROUTING, http_server)
    state = build_flow(spec)(client=client_slug, settings={"threshold": 80}, return_state=True)
    result = state.result()

    assert result["hot"]["status"] == "completed"
    assert result["cold"] == {"status": "skipped", "output": None, "error": None}
    assert result["after_cold"]["status"] == "skipped"  # skips propagate
    assert [o["body"]["name"] for o in result["each"]["output"]] == ["A", "B", "C", "D", "E"]
    assert http_server.requests_to("/hot")[0].json() == {"score": 90}
    assert http_server.requests_to("/cold") == [] and http_server.requests_to("/after") == []

    runs = {t.name: t for t in _task_runs(state.state_details.flow_run_id)}
    assert {"fetch", "hot", "cold", "after_cold", "each[0]", "each[4]"} <= set(runs)
    assert runs["cold"].state.name == "Skipped"


def test_independent_branches_run_concurrently(http_server: HttpServer, client_slug: str) -> None:
    http_server.respond("/left", Reply(json={}, delay=1.0))
    http_server.respond("/right", Reply(json={}, delay=1.0))
    spec = _spec(
        """
name: parallel
nodes:
  - {id: left, node: http_request, params: {url: "BASE/left"}}
  - {id: right, node: http_request, params: {url: "BASE/right"}}
""",
        http_server,
    )
    state = build_flow(spec)(client=client_slug, return_state=True)
    runs = {t.name: t for t in _task_runs(state.state_details.flow_run_id)}
    left, right = runs["left"], runs["right"]
    # each started before the other ended: they overlapped
    assert left.start_time < right.end_time and right.start_time < left.end_time


def test_durable_resume_skips_completed_nodes(http_server: HttpServer, client_slug: str) -> None:
    http_server.respond("/one", {"n": 1})
    http_server.respond("/two", {"n": 2})
    http_server.respond("/three", 404, {"n": 3})  # fails permanently once, then succeeds
    spec = _spec(
        """
name: durable
retries: 1
nodes:
  - {id: one, node: http_request, params: {url: "BASE/one"}}
  - {id: two, node: http_request, params: {url: "BASE/two?after={{ nodes.one.output.body.n }}"}}
  - {id: three, node: http_request, params: {url: "BASE/three"}}
edges: [{from: one, to: two}, {from: two, to: three}]
""",
        http_server,
    )
    result = build_flow(spec)(client=client_slug)
    assert result["three"]["output"]["body"] == {"n": 3}
    assert len(http_server.requests_to("/one")) == 1
    assert len(http_server.requests_to("/two")) == 1
    assert len(http_server.requests_to("/three")) == 2


def test_runtime_template_error_names_node_and_field(
    http_server: HttpServer, client_slug: str
) -> None:
    http_server.respond("/a", {"body": "no items here"})
    spec = _spec(
        """
name: missing-data
nodes:
  - {id: a, node: http_request, params: {url: "BASE/a"}}
  - {id: b, node: http_request, params: {url: "BASE/b?x={{ nodes.a.output.body.missing.first }}"}}
edges: [{from: a, to: b}]
""",
        http_server,
    )
    state = build_flow(spec)(client=client_slug, return_state=True)
    assert state.is_failed()
    with pytest.raises(SpecRuntimeError, match="Node 'b': param 'url': .*missing"):
        state.result()
    assert http_server.requests_to("/b") == []


def test_lifecycle_events_are_readable(http_server: HttpServer, client_slug: str) -> None:
    http_server.respond("/ping", {"ok": True})
    spec = _spec(
        """
name: evented
nodes:
  - {id: ping, node: http_request, params: {url: "BASE/ping"}}
  - {id: never, node: http_request, params: {url: "BASE/never"}}
edges: [{from: ping, to: never, when: "false"}]
""",
        http_server,
    )
    state = build_flow(spec)(client=client_slug, return_state=True)
    run_id = state.state_details.flow_run_id
    resource = f"agency.run.{client_slug}.evented.{run_id}"
    names: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "workflow.finished" not in names:
        time.sleep(0.5)  # events reach the server asynchronously
        with get_client(sync_client=True) as api:
            page = api.read_events(
                EventFilter(resource=EventResourceFilter(id=[resource])), limit=50
            )
        events = sorted(page.events, key=lambda e: e.occurred)
        names = [e.event for e in events]
    assert names == ["workflow.started", "node.completed", "node.skipped", "workflow.finished"]
    finished = events[-1]
    assert finished.resource["agency.client"] == client_slug
    assert finished.resource["agency.workflow"] == "evented"
    assert finished.payload["status"] == "completed"
    assert events[1].resource["agency.node"] == "ping"


BATCHED = """
name: batched
triggers: [webhook]
inputs: {type: object, required: [sku], properties: {sku: {type: string}}}
nodes:
  - {id: look, node: http_request, params: {url: "BASE/stock", query: {sku: "{{ inputs.sku }}"}}}
"""


def test_a_batch_sends_each_event_through_the_dag_and_a_bad_one_fails_alone(
    http_server: HttpServer, client_slug: str
) -> None:
    from flows.spec_catalog import manifest_for

    http_server.respond("/stock", {"left": 3})
    spec = _spec(BATCHED, http_server)
    assert manifest_for(spec).accepts_batches  # a webhook spec takes adaptive batches
    events = [{"sku": "a-1"}, {"colour": "red"}, {"sku": "b-2"}]
    result = build_flow(spec)(client=client_slug, events=events)
    assert result["events"] == 3 and result["failed"] == 1
    assert result["results"][1] is None
    assert [r["look"]["status"] for r in (result["results"][0], result["results"][2])] == [
        "completed",
        "completed",
    ]
    skus = [r.query["sku"][0] for r in http_server.requests_to("/stock")]
    assert skus == ["a-1", "b-2"]
