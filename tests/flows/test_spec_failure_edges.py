"""`on: failed` / `on: always` edges on the real Prefect server, against real local servers: a
site that answers 503 or refuses the connection is routed to a Slack stand-in and the run
Completes; a site that is up logs a row in a real PostgreSQL database; a map routes exactly its
failed items; an unhandled failure still Fails the run; a resumed run repeats only what was
pending."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventResourceFilter
from typer.testing import CliRunner

from agency.errors import TransientNodeError
from blocks import save_credential
from cli.main import app
from flows.spec.model import parse_spec
from flows.spec_runner import build_flow
from tests.fixtures._net import free_port
from tests.fixtures.http_server import HttpServer

pytestmark = pytest.mark.usefixtures("prefect_server")

UPTIME = """
name: site-check
inputs: {type: object, properties: {url: {type: string}}}
credentials:
  slack: {kind: slack_webhook}
  db: {kind: postgres}
nodes:
  - {id: check, node: http_request, retries: 1, retry_delay_seconds: 0,
     params: {url: "{{ inputs.url }}", timeout_seconds: 5}}
  - id: alert
    node: notify
    params:
      text: >-
        {{ inputs.url }} is down:
        {{ nodes.check.error.type }} {{ nodes.check.error.status_code }}
  - id: log_up
    node: db_query
    params:
      sql: "INSERT INTO site_checks (url, status) VALUES (%(url)s, %(status)s)"
      parameters: {url: "{{ inputs.url }}", status: "{{ nodes.check.output.status }}"}
      fetch: none
edges:
  - {from: check, to: alert, on: failed}
  - {from: check, to: log_up}
"""


def _conninfo(client: str, http_server: HttpServer, database_url: str) -> str:
    db = urlparse(database_url.replace("+psycopg", ""))
    save_credential(client, "slack_webhook", "default", {"url": http_server.url("/slack")})
    fields = {"host": db.hostname, "port": db.port, "database": db.path.lstrip("/")}
    save_credential(client, "postgres", "default", {**fields, "username": db.username})
    conninfo = database_url.replace("+psycopg", "")
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS site_checks (url text, status int)")
    return conninfo


def _events(resource: str, until: str) -> list[Any]:
    names: list[str] = []
    events: list[Any] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and until not in names:
        time.sleep(0.5)  # events reach the server asynchronously
        with get_client(sync_client=True) as api:
            page = api.read_events(
                EventFilter(resource=EventResourceFilter(id=[resource])), limit=50
            )
        events = sorted(page.events, key=lambda e: e.occurred)
        names = [e.event for e in events]
    return events


def test_site_down_alerts_and_site_up_logs(
    http_server: HttpServer, postgresql_database_url: str, client_slug: str
) -> None:
    conninfo = _conninfo(client_slug, http_server, postgresql_database_url)
    http_server.respond("/slack", {"ok": True})
    http_server.respond("/up", {"ok": True})
    http_server.respond("/down", 503)
    spec, _ = parse_spec(UPTIME)
    flow = build_flow(spec)

    down = flow(client=client_slug, settings={"url": http_server.url("/down")}, return_state=True)
    assert down.is_completed()  # the failure was handled
    result = down.result()
    assert result["check"]["status"] == "failed"
    assert result["check"]["error"]["type"] == "TransientNodeError"
    assert result["check"]["error"]["status_code"] == 503
    assert "answered 503" in result["check"]["error"]["message"]
    assert result["log_up"]["status"] == "skipped"
    assert len(http_server.requests_to("/down")) == 2  # failed after its retry
    [alert] = http_server.requests_to("/slack")
    assert alert.json()["text"] == f"{http_server.url('/down')} is down: TransientNodeError 503"

    events = _events(
        f"agency.run.{client_slug}.site-check.{down.state_details.flow_run_id}",
        "workflow.finished",
    )
    failed = next(e for e in events if e.event == "node.failed")
    assert failed.payload["handled"] is True and failed.payload["status_code"] == 503
    assert events[-1].payload["status"] == "completed"
    assert events[-1].payload["failed"] == ["check"]

    up = flow(client=client_slug, settings={"url": http_server.url("/up")})
    assert up["check"]["status"] == "completed" and up["check"]["error"] is None
    assert up["alert"]["status"] == "skipped"
    assert len(http_server.requests_to("/slack")) == 1
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT url, status FROM site_checks").fetchall()
    assert rows == [(http_server.url("/up"), 200)]


def test_refused_connection_is_routed_too(http_server: HttpServer, client_slug: str) -> None:
    save_credential(client_slug, "slack_webhook", "default", {"url": http_server.url("/slack")})
    http_server.respond("/slack", {"ok": True})
    spec, _ = parse_spec(
        """
name: refused
credentials: {slack: {kind: slack_webhook}}
nodes:
  - {id: check, node: http_request, retries: 0, params: {url: "URL", timeout_seconds: 5}}
  - {id: alert, node: notify, params: {text: "{{ nodes.check.error.message }}"}}
  - {id: done, node: log_message, params: {message: "checked"}}
edges:
  - {from: check, to: alert, on: failed}
  - {from: check, to: done, on: always}
""".replace("URL", f"http://127.0.0.1:{free_port()}/")
    )
    result = build_flow(spec)(client=client_slug)
    assert result["check"]["error"]["type"] == "TransientNodeError"
    assert result["check"]["error"]["status_code"] is None
    assert result["done"]["status"] == "completed"
    assert "failed" in http_server.requests_to("/slack")[0].json()["text"]


def test_map_routes_exactly_the_failed_items(http_server: HttpServer, client_slug: str) -> None:
    save_credential(client_slug, "slack_webhook", "default", {"url": http_server.url("/slack")})
    http_server.respond("/slack", {"ok": True})
    for name in ("a", "c", "e"):
        http_server.respond(f"/site/{name}", {"ok": True})
    for name in ("b", "d"):
        http_server.respond(f"/site/{name}", 503)
    urls = [http_server.url(f"/site/{n}") for n in "abcde"]
    spec, _ = parse_spec(
        """
name: many-sites
credentials: {slack: {kind: slack_webhook}}
nodes:
  - {id: check, node: http_request, map: "{{ inputs.urls }}", retries: 0,
     params: {url: "{{ item }}"}}
  - {id: alert, node: notify, map: "{{ nodes.check.failed }}",
     params: {text: "{{ item.item }} is down ({{ item.error.status_code }})"}}
  - {id: up, node: log_message, map: "{{ nodes.check.succeeded }}",
     params: {message: "{{ item.output.url }} is up"}}
edges:
  - {from: check, to: alert, on: failed}
  - {from: check, to: up}
"""
    )
    state = build_flow(spec)(client=client_slug, event={"urls": urls}, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["check"]["status"] == "failed"
    assert [f["index"] for f in result["check"]["failed"]] == [1, 3]
    assert [o is None for o in result["check"]["output"]] == [False, True, False, True, False]
    texts = sorted(r.json()["text"] for r in http_server.requests_to("/slack"))
    assert texts == [f"{urls[1]} is down (503)", f"{urls[3]} is down (503)"]
    assert [o["message"] for o in result["up"]["output"]] == [f"{urls[i]} is up" for i in (0, 2, 4)]


def test_unhandled_failure_still_fails_the_run(http_server: HttpServer, client_slug: str) -> None:
    http_server.respond("/down", 503)
    spec, _ = parse_spec(
        """
name: unhandled
nodes:
  - {id: check, node: http_request, retries: 0, params: {url: "URL"}}
  - {id: after, node: log_message, params: {message: "never"}}
  - {id: sibling, node: log_message, params: {message: "{{ nodes.check.error }}"}}
edges:
  - {from: check, to: after}
  - {from: check, to: sibling}   # reads check.error, but no edge handles the failure
""".replace("URL", http_server.url("/down"))
    )
    state = build_flow(spec)(client=client_slug, return_state=True)
    assert state.is_failed()
    with pytest.raises(TransientNodeError, match="answered 503"):
        state.result()
    assert len(http_server.requests_to("/down")) == 1


def test_resume_repeats_only_what_was_pending(http_server: HttpServer, client_slug: str) -> None:
    """Attempt 1: `check` fails (handled), `alert` runs, `one` completes, `last` crashes (404).
    Attempt 2 (the flow's retry, same run): only `last` runs again."""
    save_credential(client_slug, "slack_webhook", "default", {"url": http_server.url("/slack")})
    http_server.respond("/slack", {"ok": True})
    http_server.respond("/down", 503, {"ok": True})  # down on attempt 1 only
    http_server.respond("/one", {"n": 1})
    http_server.respond("/last", 404, {"n": 2})  # crashes attempt 1, then fine
    spec, _ = parse_spec(
        """
name: resumable
retries: 1
credentials: {slack: {kind: slack_webhook}}
nodes:
  - {id: check, node: http_request, retries: 0, params: {url: "BASE/down"}}
  - {id: alert, node: notify, params: {text: "down"}}
  - {id: one, node: http_request, params: {url: "BASE/one"}}
  - {id: last, node: http_request, params: {url: "BASE/last"}}
edges:
  - {from: check, to: alert, on: failed}
  - {from: check, to: one, on: always}
  - {from: one, to: last}
""".replace("BASE", http_server.url("").rstrip("/"))
    )
    state = build_flow(spec)(client=client_slug, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["check"]["status"] == "failed"  # the recorded outcome, not a second call
    assert result["last"]["output"]["body"] == {"n": 2}
    assert len(http_server.requests_to("/down")) == 1
    assert len(http_server.requests_to("/slack")) == 1
    assert len(http_server.requests_to("/one")) == 1
    assert len(http_server.requests_to("/last")) == 2


def test_cli_spec_run_shows_the_handled_failure(
    http_server: HttpServer, client_slug: str, tmp_path: Path
) -> None:
    http_server.respond("/down", 503)
    path = tmp_path / "check.yaml"
    path.write_text(
        """
name: cli-check
nodes:
  - {id: check, node: http_request, retries: 0, params: {url: "URL"}}
  - {id: note, node: log_message, params: {message: "down: {{ nodes.check.error.status_code }}"}}
edges: [{from: check, to: note, on: failed}]
""".replace("URL", http_server.url("/down"))
    )
    result = CliRunner().invoke(app, ["spec", "run", str(path), "--client", client_slug])
    assert result.exit_code == 0, result.output
    assert "check\tfailed\tTransientNodeError: GET " in result.output
    assert "note\tcompleted" in result.output
