"""Batch triggers: deliveries grouped into runs of ``events: [...]``, exactly once, with outcomes.

Real gateway and dispatcher (in-process or as child processes), real Prefect server; the
outcome test runs the product's ``event_archive`` workflow on a real process worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.states import Crashed, Failed
from sqlalchemy import select

from agency.db import WebhookBatch, WebhookDelivery, WebhookEndpoint, session_scope, upgrade
from agency.db.outcomes import record_outcomes
from agency.errors import InputInvalid
from agency.settings import Settings
from deployments import ensure_work_pool, settlement
from deployments.dispatcher import Dispatcher
from services import activate, add_client
from services.api_keys import create_api_key
from services.webhooks import BatchPolicy, enable_webhook
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
from tests.gateway.test_reliability import burst, runs_of
from tests.gateway.test_verifiers import signed


def send(http: httpx.Client, hook: Hook, payload: dict[str, Any], msg_id: str) -> str:
    body = json.dumps(payload).encode()
    headers = {**signed(hook.verifier, hook.secret, body, msg_id=msg_id)}
    headers["content-type"] = "application/json"
    answer = http.post(hook.path, content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["delivery_id"])


def deliveries(settings: Settings) -> list[Any]:
    with session_scope(settings.platform_database_url) as session:
        return list(
            session.execute(
                select(
                    WebhookDelivery.id,
                    WebhookDelivery.status,
                    WebhookDelivery.flow_run_id,
                    WebhookDelivery.batch_id,
                    WebhookDelivery.batch_index,
                    WebhookDelivery.payload,
                )
            ).all()
        )


def wait_dispatched(settings: Settings, expected: int, stall: float = 60) -> list[Any]:
    """Wait while dispatching progresses; fail after ``stall`` seconds without progress."""
    done, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < stall:
        rows = deliveries(settings)
        now_done = sum(r.status == "dispatched" for r in rows)
        if len(rows) == expected and now_done == expected:
            return rows
        if now_done != done:
            done, last_change = now_done, time.monotonic()
        time.sleep(0.3)
    raise AssertionError(f"{expected - done} of {expected} deliveries stuck for {stall}s")


def send_and_dispatch(settings: Settings, hook: Hook, count: int) -> tuple[list[str], list[Any]]:
    """Send events ``{"n": 0}`` … through a real gateway with its dispatcher; the delivery ids,
    in order, and the delivery rows once all are dispatched."""
    running = serve(settings)
    try:
        with running.client() as http:
            sent = [send(http, hook, {"n": i}, f"msg_{i}") for i in range(count)]
        return sent, wait_dispatched(settings, count)
    finally:
        running.stop()


def assert_each_delivery_in_one_batch_run(rows: list[Any], runs: list[Any]) -> None:
    """Every delivery is in exactly one run's ``events``, at its place; no run without a batch."""
    by_batch: dict[str, list[Any]] = {}
    for row in rows:
        assert row.batch_id is not None
        by_batch.setdefault(row.batch_id, []).append(row)
    assert len(runs) == len(by_batch)  # one run per batch: no duplicates, no strays
    for run in runs:
        members = sorted(by_batch[run.idempotency_key], key=lambda r: r.batch_index)
        assert [r.batch_index for r in members] == list(range(len(members)))
        assert run.parameters["events"] == [r.payload for r in members]
        assert f"batch:{run.idempotency_key}" in run.tags
        assert {r.flow_run_id for r in members} == {str(run.id)}
    sent = [json.dumps(r.payload, sort_keys=True) for r in rows]
    in_runs = [json.dumps(e, sort_keys=True) for run in runs for e in run.parameters["events"]]
    assert sorted(in_runs) == sorted(sent)


def test_batch_policy_is_validated_and_only_for_batch_workflows(
    gateway_settings: Settings, echo_workflows: None, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug, "echo_batch")
    for policy, message in [
        (BatchPolicy(0, 1.0), "between 1 and 1000"),
        (BatchPolicy(1001, 1.0), "between 1 and 1000"),
        (BatchPolicy(10, 0.0), "above 0"),
        (BatchPolicy(10, 7200.0), "at most 3600"),
    ]:
        with pytest.raises(InputInvalid, match=message):
            enable_webhook(gateway_settings, hook.client, "echo_batch", batch=policy)
    activate(gateway_settings, client_slug, "echo", {}, None)
    with pytest.raises(InputInvalid, match="'echo' does not accept batches"):
        enable_webhook(gateway_settings, client_slug, "echo", batch=BatchPolicy(10, 1.0))
    with session_scope(gateway_settings.platform_database_url) as session:
        endpoints = session.scalars(select(WebhookEndpoint)).all()
        # the refused policies changed nothing: echo_batch keeps its single-event endpoint
        assert [(e.batch_max_events, e.batch_max_wait_s) for e in endpoints] == [(None, None)]


def test_deliveries_are_grouped_by_size_and_by_wait(
    gateway_settings: Settings, echo_workflows: None, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug, "echo_batch", batch=BatchPolicy(3, 1.0))
    sent, rows = send_and_dispatch(gateway_settings, hook, 7)
    assert {r.id for r in rows} == set(sent)
    runs = runs_of(hook)
    # two full batches right away, the seventh event after waiting max_wait_s alone
    assert sorted(len(r.parameters["events"]) for r in runs) == [1, 3, 3]
    assert_each_delivery_in_one_batch_run(rows, runs)
    ordered = sorted(runs, key=lambda r: r.parameters["events"][0]["n"])
    assert [e["n"] for r in ordered for e in r.parameters["events"]] == list(range(7))
    with session_scope(gateway_settings.platform_database_url) as session:
        batches = session.scalars(select(WebhookBatch)).all()
        assert sorted(b.size for b in batches) == [1, 3, 3]
        assert {b.status for b in batches} == {"dispatched"}


def test_batches_exactly_once_across_a_dispatcher_kill(
    tmp_path: Path,
    postgresql_database_url: str,
    prefect_server: str,
    echo_workflows: None,
    client_slug: str,
) -> None:
    settings = Settings(home=tmp_path, database_url=postgresql_database_url, work_pool=IDLE_POOL)
    upgrade(settings.platform_database_url)
    ensure_work_pool(IDLE_POOL)
    hook = make_hook(
        settings, client_slug, "echo_batch", rate_limit=10**6, batch=BatchPolicy(10, 0.5)
    )
    gateway, url = start_gateway_process(settings, tmp_path / "gateway.log", dispatcher=False)
    args = ["dispatcher", "--lease-seconds", "5", "--concurrency", "3"]
    env = platform_env(settings)
    victim = ChildProcess(args, env, tmp_path / "d1.log").start()
    survivor = ChildProcess(args, env, tmp_path / "d2.log").start()
    count = 150
    try:

        async def scenario() -> list[str]:
            sending = asyncio.create_task(burst(url, hook, count))
            while sum(r.status == "dispatched" for r in deliveries(settings)) < 20:
                await asyncio.sleep(0.05)
            victim.kill()  # SIGKILL: formed batches and leased ones stay behind
            accepted = await sending
            victim.start()
            return accepted

        accepted = asyncio.run(scenario())
        rows = wait_dispatched(settings, count)
    finally:
        for proc in (victim, survivor, gateway):
            proc.stop()
    assert {r.id for r in rows} == set(accepted)
    assert_each_delivery_in_one_batch_run(rows, runs_of(hook))


def test_one_bad_event_fails_alone_and_outcomes_are_served(
    prefect_worker: Worker, client_slug: str
) -> None:
    # the worker's runs write outcomes to the platform DB of its environment: the session's
    # default one (AGENCY_HOME from conftest), so this test uses the same
    settings = Settings(work_pool=prefect_worker.pool)
    upgrade(settings.platform_database_url)
    add_client(settings, client_slug, client_slug)
    activate(settings, client_slug, "event_archive", {"expression": "order"}, None)
    view = enable_webhook(
        settings, client_slug, "event_archive", batch=BatchPolicy(3, 30.0), rate_limit_per_hour=100
    )
    path = f"/hooks/{client_slug}/event_archive"
    hook = Hook(client_slug, "event_archive", "standard", view.secret, path)
    key = create_api_key(settings, client_slug).key
    running: RunningGateway = serve(settings)
    try:
        with running.client() as http:
            events = [{"order": {"id": 1}}, {"note": "no order here"}, {"order": {"id": 3}}]
            sent = [send(http, hook, e, f"ev_{i}") for i, e in enumerate(events)]
            auth = {"authorization": f"Bearer {key}"}
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                answers = [http.get(f"/api/v1/deliveries/{d}", headers=auth).json() for d in sent]
                if all(a["outcome"] for a in answers):
                    break
                time.sleep(1)
    finally:
        running.stop()
    assert [a["outcome"] for a in answers] == ["done", "failed", "done"], answers
    assert "found nothing in this event" in answers[1]["error"]
    assert answers[0]["error"] is None and answers[2]["error"] is None
    run_id = answers[0]["flow_run_id"]
    assert {a["flow_run_id"] for a in answers} == {run_id}
    assert len({a["batch_id"] for a in answers}) == 1
    with get_client(sync_client=True) as api:
        run = api.read_flow_run(run_id)
        assert run.state is not None and run.state.is_completed()
    stored = list(settings.files_dir.glob(f"{client_slug}/event_archive/{run_id}/events/*"))
    assert [p.name for p in stored] == ["events.jsonl"]
    lines = stored[0].read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"id": 1}, {"id": 3}]


def test_events_of_batch_runs_that_ended_without_recording_are_failed_with_the_reason(
    gateway_settings: Settings,
    echo_workflows: None,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settlement, "PAGE", 1)  # each batch on its own page of runs to read
    hook = make_hook(gateway_settings, client_slug, "echo_batch", batch=BatchPolicy(2, 0.5))
    sent, rows = send_and_dispatch(gateway_settings, hook, 6)
    by_n = {r.payload["n"]: r for r in rows}
    runs = sorted(runs_of(hook), key=lambda r: r.parameters["events"][0]["n"])
    crashed, failed, waiting = (r.id for r in runs)  # events 0-1, 2-3, 4-5
    # no worker polls this pool: the test does what a worker and a flow would have done
    with get_client(sync_client=True) as api:
        # the worker, when the run's process dies (tested in test_prefork_worker.py)
        kill = "Flow run infrastructure exited with non-zero status code -9."
        api.set_flow_run_state(crashed, Crashed(message=kill), force=True)
        # a batch flow that recorded its first event, then failed in a step of the batch
        with session_scope(gateway_settings.platform_database_url) as session:
            record_outcomes(session, str(by_n[2].batch_id), [None])
        # an exception that quoted a credential: its message must not reach the client API
        leak = "archive unreachable: 401 for Bearer sk-live-0123456789"
        api.set_flow_run_state(failed, Failed(message=leak), force=True)
    url = gateway_settings.platform_database_url

    async def settle() -> tuple[int, int]:
        async with get_client() as api:
            too_soon = await Dispatcher(url).settle(api)  # within the 30 s grace: a crashed
            # run may still be rescheduled by the recovery automation
        stop = asyncio.Event()
        dispatcher = Dispatcher(url, settle_seconds=0.2, settle_grace_seconds=0)
        task = asyncio.create_task(dispatcher.run(stop))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(outcomes()) < 4:
            await asyncio.sleep(0.2)
        stop.set()
        await task
        async with get_client() as api:
            again = await dispatcher.settle(api)
        return too_soon, again

    def outcomes() -> dict[str, tuple[str, str | None]]:
        with session_scope(url) as session:
            found = session.execute(
                select(WebhookDelivery.id, WebhookDelivery.outcome, WebhookDelivery.outcome_error)
            ).all()
        return {row.id: (row.outcome, row.outcome_error) for row in found if row.outcome}

    too_soon, again = asyncio.run(settle())
    assert (too_soon, again) == (0, 0)
    settled = outcomes()
    reason = f"Its flow run {crashed} ended Crashed before recording this event's outcome."
    assert settled[by_n[0].id] == settled[by_n[1].id] == ("failed", reason)
    assert settled[by_n[2].id] == ("done", None)  # what the run recorded stays
    assert settled[by_n[3].id] == (
        "failed",
        f"Its flow run {failed} ended Failed before recording this event's outcome.",
    )
    assert not any("sk-live" in (error or "") for _, error in settled.values())
    assert by_n[4].id not in settled and by_n[5].id not in settled  # its run has not ended
    assert {r.flow_run_id for r in (by_n[4], by_n[5])} == {str(waiting)}
    # the client API serves them
    key = create_api_key(gateway_settings, client_slug).key
    running = serve(gateway_settings, run_dispatcher=False)
    try:
        with running.client() as http:
            answer = http.get(
                f"/api/v1/deliveries/{sent[0]}", headers={"authorization": f"Bearer {key}"}
            ).json()
    finally:
        running.stop()
    assert (answer["outcome"], answer["error"]) == ("failed", reason)
