"""The client API over real HTTP: key authentication, starting a run like a webhook, listing,
reading, cancelling and following runs (SSE) on a real worker, client isolation (404 for another
client's objects), and a schemathesis run over the served OpenAPI that finds no 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings

from agency.db import upgrade
from agency.settings import Settings
from deployments import ensure_work_pool
from services.api_keys import create_api_key, list_api_keys, revoke_api_key
from services.webhooks import list_deliveries
from tests.fixtures.gateway import IDLE_POOL, RunningGateway, make_hook, serve


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def wait_run_id(http: httpx.Client, key: str, delivery_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = http.get(f"/api/v1/deliveries/{delivery_id}", headers=auth(key))
        assert answer.status_code == 200, answer.text
        if answer.json()["flow_run_id"]:
            return str(answer.json()["flow_run_id"])
        time.sleep(0.2)
    raise AssertionError("delivery never dispatched")


def test_keys_scope_every_object_to_one_client(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    other = f"{client_slug}-b"
    make_hook(gateway_settings, client_slug)
    make_hook(gateway_settings, other)
    key_a = create_api_key(gateway_settings, client_slug, "ci").key
    key_b = create_api_key(gateway_settings, other).key

    with gateway.client() as http:
        assert http.get("/api/v1/runs").status_code == 401
        assert http.get("/api/v1/runs", headers=auth("agk_nope")).status_code == 401

        started = http.post(
            "/api/v1/workflows/echo/runs",
            json={"order": 7},
            headers={**auth(key_a), "idempotency-key": "order-7"},
        )
        assert started.status_code == 202, started.text
        delivery_id = started.json()["delivery_id"]
        again = http.post(
            "/api/v1/workflows/echo/runs",
            json={"order": 7},
            headers={**auth(key_a), "idempotency-key": "order-7"},
        )
        assert again.status_code == 200 and again.json()["delivery_id"] == delivery_id
        not_object = http.post("/api/v1/workflows/echo/runs", json=[1], headers=auth(key_a))
        assert not_object.status_code == 422
        assert (
            http.post("/api/v1/workflows/nope/runs", json={}, headers=auth(key_a)).status_code
            == 404
        )

        run_id = wait_run_id(http, key_a, delivery_id)
        listed = http.get("/api/v1/runs", params={"workflow": "echo"}, headers=auth(key_a))
        assert [r["id"] for r in listed.json()["runs"]] == [run_id]
        scheduled = http.get("/api/v1/runs", params={"state": "SCHEDULED"}, headers=auth(key_a))
        assert [r["id"] for r in scheduled.json()["runs"]] == [run_id]
        detail = http.get(f"/api/v1/runs/{run_id}", headers=auth(key_a)).json()
        assert detail["workflow"] == "echo" and detail["parameters_event"] == {"order": 7}

        # client B sees none of it: same 404 as for objects that do not exist
        for path in (f"/api/v1/runs/{run_id}", f"/api/v1/deliveries/{delivery_id}"):
            assert http.get(path, headers=auth(key_b)).status_code == 404
        assert http.get(f"/api/v1/runs/{run_id}/events", headers=auth(key_b)).status_code == 404
        assert http.post(f"/api/v1/runs/{run_id}/cancel", headers=auth(key_b)).status_code == 404
        assert http.get("/api/v1/runs", headers=auth(key_b)).json()["runs"] == []

        cancelled = http.post(f"/api/v1/runs/{run_id}/cancel", headers=auth(key_a))
        assert cancelled.status_code == 202
        assert cancelled.json()["state"] in ("CANCELLING", "CANCELLED")

        [key] = list_api_keys(gateway_settings, client_slug)
        revoke_api_key(gateway_settings, client_slug, key.id)
        assert http.get("/api/v1/runs", headers=auth(key_a)).status_code == 401


def test_events_stream_follows_a_run_to_its_end(
    tmp_path: Path, prefect_worker: Any, client_slug: str, echo_workflows: None
) -> None:
    settings = Settings(home=tmp_path, work_pool=prefect_worker.pool)
    upgrade(settings.platform_database_url)
    make_hook(settings, client_slug)
    key = create_api_key(settings, client_slug).key
    running = serve(settings)
    try:
        with running.client() as http:
            started = http.post("/api/v1/workflows/echo/runs", json={"x": 1}, headers=auth(key))
            run_id = wait_run_id(http, key, started.json()["delivery_id"])
            events = []
            with http.stream(
                "GET", f"/api/v1/runs/{run_id}/events", headers=auth(key), timeout=120
            ) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                name = None
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line.removeprefix("data: "))))
        states = [data["state"] for name, data in events if name == "state"]
        # the worker may pick the run up before the stream opens: the stream starts at the
        # current state and then follows every change, in order
        order = ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
        assert states[-1] == "COMPLETED" and states[0] in order
        assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)
        assert events[-1] == ("end", {"run_id": run_id, "state": "COMPLETED"})
        [delivery] = list_deliveries(settings, client_slug)
        assert delivery.flow_run_id == run_id
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api_target(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: str
) -> Iterator[tuple[str, str]]:
    from flows import catalog
    from tests.workflows.echo_flow import ECHO

    catalog.WORKFLOWS[ECHO.slug] = ECHO
    settings = Settings(home=tmp_path_factory.mktemp("openapi"), work_pool=IDLE_POOL)
    upgrade(settings.platform_database_url)
    ensure_work_pool(IDLE_POOL)
    make_hook(settings, "schema-client", rate_limit=10**6)
    key = create_api_key(settings, "schema-client").key
    running = serve(settings, run_dispatcher=False)
    try:
        yield running.url, key
    finally:
        running.stop()
        catalog.WORKFLOWS.pop(ECHO.slug, None)


# schemathesis' own strategies sometimes use `random`, which Hypothesis flags with a deprecation
# warning; that is theirs, not ours, and must not fail the run
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_openapi_fuzz_finds_no_server_error(api_target: tuple[str, str]) -> None:
    """Schemathesis generates requests for every operation of /openapi.json; none gets a 5xx."""
    url, key = api_target
    with httpx.Client() as http:
        assert http.get(f"{url}/docs").status_code == 200
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    for operation in operations:

        @fuzz_settings(
            max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call(base_url=url, headers=auth(key))
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        call()
