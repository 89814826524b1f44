"""Adaptive batching: one run per event at rest, batches while an activation falls behind,
exactly once through the switch.

Real gateway and dispatcher (in-process or as child processes) and a real Prefect server; the
outcome test runs the product's ``event_archive`` on a real process worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import select

from agency.db import WebhookEndpoint, session_scope, upgrade
from agency.errors import InputInvalid
from agency.settings import Settings
from deployments import ensure_work_pool
from deployments.webhooks import adaptive
from services import activate, add_client
from services.api_keys import create_api_key
from services.webhooks import AdaptivePolicy, BatchPolicy, enable_webhook, list_deliveries
from tests.fixtures.gateway import (
    IDLE_POOL,
    ChildProcess,
    Hook,
    RunningGateway,
    make_hook,
    platform_env,
    serve,
    start_gateway_process,
)
from tests.fixtures.worker import Worker
from tests.gateway.test_batches import deliveries, send, wait_dispatched
from tests.gateway.test_reliability import burst, runs_of


def assert_each_delivery_in_exactly_one_run(rows: list[Any], runs: list[Any]) -> None:
    """A single delivery is the one run keyed by its id with its event; a batched one is in its
    batch's run, at its place; no run is left without a delivery."""
    by_key = {run.idempotency_key: run for run in runs}
    assert len(by_key) == len(runs)
    assert all("trigger:webhook" in run.tags for run in runs)  # the portal says "webhook"
    batches: dict[str, list[Any]] = {}
    for row in rows:
        if row.batch_id is None:
            run = by_key[row.id]
            assert run.parameters["event"] == row.payload
            assert row.flow_run_id == str(run.id)
        else:
            batches.setdefault(row.batch_id, []).append(row)
    for batch_id, members in batches.items():
        run = by_key[batch_id]
        members.sort(key=lambda r: r.batch_index)
        assert run.parameters["events"] == [r.payload for r in members]
        assert {r.flow_run_id for r in members} == {str(run.id)}
    singles = sum(row.batch_id is None for row in rows)
    assert len(runs) == singles + len(batches)  # no duplicate, no stray run


def test_modes_are_validated(
    gateway_settings: Settings, echo_workflows: None, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug, "echo_batch")
    for kwargs, message in [
        ({"mode": "sometimes"}, "Unknown batch mode 'sometimes'"),
        ({"mode": "always"}, "needs a batch size"),
        ({"mode": "off", "batch": BatchPolicy(10, 1.0)}, "takes no batch size"),
        ({"adaptive": AdaptivePolicy(0, 1.0)}, "inflight must be between 1 and 1000"),
        ({"adaptive": AdaptivePolicy(10, 0.0)}, "age_s must be above 0"),
    ]:
        with pytest.raises(InputInvalid, match=message):
            enable_webhook(gateway_settings, hook.client, "echo_batch", **kwargs)  # type: ignore[arg-type]
    activate(gateway_settings, client_slug, "echo", {}, None)
    with pytest.raises(InputInvalid, match="'echo' does not accept batches"):
        enable_webhook(gateway_settings, client_slug, "echo", mode="adaptive")
    enable_webhook(gateway_settings, client_slug, "echo")  # one run per event by default
    with session_scope(gateway_settings.platform_database_url) as session:
        modes = {e.activation_id: e.batch_mode for e in session.scalars(select(WebhookEndpoint))}
    # a workflow that accepts batches is adaptive by default, the others one run per event;
    # the refused changes left echo_batch as it was
    assert sorted(modes.values()) == ["adaptive", "off"]


def test_a_burst_switches_to_batches_and_a_lone_event_after_it_runs_alone(
    gateway_settings: Settings,
    echo_workflows: None,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the in-process dispatcher forgets the burst's single runs after 2 s instead of 20 s
    monkeypatch.setattr(adaptive, "INFLIGHT_WINDOW", timedelta(seconds=2))
    hook = make_hook(gateway_settings, client_slug, "echo_batch", rate_limit=10**6)
    running: RunningGateway = serve(gateway_settings)
    try:
        with running.client() as http:
            first = send(http, hook, {"n": -1}, "msg_first")
            rows = wait_dispatched(gateway_settings, 1)
            assert rows[0].batch_id is None  # at rest: its own run at once
            accepted = asyncio.run(burst(running.url, hook, 200))
            rows = wait_dispatched(gateway_settings, 201)
            time.sleep(3)  # the burst is over and out of the in-flight window
            lone = send(http, hook, {"n": 1000}, "msg_lone")
            rows = wait_dispatched(gateway_settings, 202)
            metrics = http.get("/metrics").text
    finally:
        running.stop()
    assert {r.id for r in rows} == {first, lone, *accepted}
    by_id = {r.id: r for r in rows}
    in_burst = [by_id[d] for d in accepted]
    batched = [r for r in in_burst if r.batch_id is not None]
    # most of the burst went in batches; the few claimed before it fell behind went alone
    assert len(batched) >= 150, len(batched)
    assert by_id[lone].batch_id is None
    counted = {
        mode: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        for mode in ("single", "batch")
        if line.startswith(f'agency_webhook_events_dispatched_total{{mode="{mode}"}}')
    }
    assert counted == {"single": 202 - len(batched), "batch": len(batched)}
    runs = runs_of(hook)
    assert len(runs) < 100  # 202 events
    assert_each_delivery_in_exactly_one_run(rows, runs)
    views = {v.id: v for v in list_deliveries(gateway_settings, client_slug, limit=1000)}
    assert views[lone].mode == "alone" and views[batched[0].id].mode == "batch"


def test_adaptive_exactly_once_across_a_dispatcher_kill(
    tmp_path: Path,
    postgresql_database_url: str,
    prefect_server: str,
    echo_workflows: None,
    client_slug: str,
) -> None:
    settings = Settings(home=tmp_path, database_url=postgresql_database_url, work_pool=IDLE_POOL)
    upgrade(settings.platform_database_url)
    ensure_work_pool(IDLE_POOL)
    hook = make_hook(settings, client_slug, "echo_batch", rate_limit=10**6)
    gateway, url = start_gateway_process(settings, tmp_path / "gateway.log", dispatcher=False)
    args = ["dispatcher", "--lease-seconds", "5", "--concurrency", "3"]
    env = platform_env(settings)
    victim = ChildProcess(args, env, tmp_path / "d1.log").start()
    survivor = ChildProcess(args, env, tmp_path / "d2.log").start()
    count = 200
    try:

        async def scenario() -> list[str]:
            sending = asyncio.create_task(burst(url, hook, count))
            while sum(r.status == "dispatched" for r in deliveries(settings)) < 20:
                await asyncio.sleep(0.05)
            victim.kill()  # SIGKILL: leased singles, promoted and formed batches stay behind
            accepted = await sending
            victim.start()
            return accepted

        accepted = asyncio.run(scenario())
        rows = wait_dispatched(settings, count)
    finally:
        for proc in (victim, survivor, gateway):
            proc.stop()
    assert {r.id for r in rows} == set(accepted)
    assert any(r.batch_id is not None for r in rows)
    assert_each_delivery_in_exactly_one_run(rows, runs_of(hook))


def test_a_failing_event_in_an_adaptive_batch_fails_alone(
    prefect_worker: Worker, client_slug: str
) -> None:
    # the worker's runs write outcomes to the session's default platform DB: use the same
    settings = Settings(work_pool=prefect_worker.pool)
    upgrade(settings.platform_database_url)
    add_client(settings, client_slug, client_slug)
    activate(settings, client_slug, "event_archive", {"expression": "order"}, None)
    view = enable_webhook(
        settings,
        client_slug,
        "event_archive",
        adaptive=AdaptivePolicy(inflight=3, age_s=60.0),
        rate_limit_per_hour=100,
    )
    hook = Hook(
        client_slug, "event_archive", "standard", view.secret, f"/hooks/{client_slug}/event_archive"
    )
    key = create_api_key(settings, client_slug).key
    events = [{"order": {"id": i}} for i in range(6)]
    events[3] = {"note": "no order here"}
    # accepted while no dispatcher runs: six waiting, more than 3 in flight, so one batch
    accepting = serve(settings, run_dispatcher=False)
    try:
        with accepting.client() as http:
            sent = [send(http, hook, e, f"ev_{i}") for i, e in enumerate(events)]
    finally:
        accepting.stop()
    running = serve(settings)
    try:
        with running.client() as http:
            auth = {"authorization": f"Bearer {key}"}
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                answers = [http.get(f"/api/v1/deliveries/{d}", headers=auth).json() for d in sent]
                if all(a["outcome"] for a in answers):
                    break
                time.sleep(1)
    finally:
        running.stop()
    assert [a["outcome"] for a in answers] == ["done"] * 3 + ["failed"] + ["done"] * 2, answers
    assert "found nothing in this event" in answers[3]["error"]
    assert len({a["batch_id"] for a in answers}) == 1 and answers[0]["batch_id"] is not None
    run_id = answers[0]["flow_run_id"]
    with get_client(sync_client=True) as api:
        assert api.read_flow_run(run_id).state.is_completed()
    stored = list(settings.files_dir.glob(f"{client_slug}/event_archive/{run_id}/events/*"))
    lines = stored[0].read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2, 4, 5]
