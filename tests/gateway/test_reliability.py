"""Nothing accepted is lost, nothing runs twice: real gateway and dispatcher processes on loopback.

- A burst of signed webhooks at concurrency 50 on PostgreSQL while one of two dispatchers is
  killed with SIGKILL and restarted: every accepted delivery ends with exactly one flow run and
  no run exists without a delivery. CI sends 60 webhooks to stay inside the test budget; set
  ``AGENCY_TEST_WEBHOOK_COUNT=1000`` for the full count of the issue.
- A private Prefect server stopped in the middle of a burst and started again: every accepted
  delivery still ends with exactly one run.
- Fuzzed headers and bodies (hypothesis): never a 5xx, and a rejection never leaves a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import select

from agency.db import WebhookDelivery, session_scope, upgrade
from agency.settings import Settings
from deployments import ensure_work_pool
from deployments.webhooks.verifiers import VERIFIERS
from tests.fixtures._net import free_port, stop_process, wait_http
from tests.fixtures.gateway import (
    IDLE_POOL,
    ChildProcess,
    Hook,
    RunningGateway,
    make_hook,
    platform_env,
    start_gateway_process,
)
from tests.gateway.test_verifiers import signed

COUNT = int(os.environ.get("AGENCY_TEST_WEBHOOK_COUNT", "60"))


async def burst(
    url: str, hook: Hook, count: int, start: int = 0, concurrency: int = 50
) -> list[str]:
    """Send ``count`` signed webhooks; return the delivery ids answered 202."""
    accepted: list[str] = []
    queue = list(range(start, start + count))
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def sender() -> None:
            while queue:
                i = queue.pop()
                body = json.dumps({"n": i}).encode()
                headers = signed(hook.verifier, hook.secret, body, msg_id=f"msg_{i}")
                headers["content-type"] = "application/json"
                answer = await http.post(hook.path, content=body, headers=headers)
                assert answer.status_code == 202, answer.text
                accepted.append(answer.json()["delivery_id"])

        await asyncio.gather(*(sender() for _ in range(concurrency)))
    return accepted


def outbox(settings: Settings) -> dict[str, tuple[str, str | None]]:
    with session_scope(settings.platform_database_url) as session:
        rows = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.status, WebhookDelivery.flow_run_id)
        ).all()
    return {r.id: (r.status, r.flow_run_id) for r in rows}


def wait_all_dispatched(settings: Settings, expected: int, stall: float = 60) -> None:
    """Wait while dispatching progresses; fail after ``stall`` seconds without progress."""
    done, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < stall:
        rows = outbox(settings)
        now_done = sum(1 for s, _ in rows.values() if s == "dispatched")
        if len(rows) == expected and now_done == expected:
            return
        if now_done != done:
            done, last_change = now_done, time.monotonic()
        time.sleep(0.5)
    raise AssertionError(f"{expected - done} of {expected} deliveries stuck for {stall}s")


def runs_of(hook: Hook) -> list[Any]:
    """Every flow run of the hook's deployment, all pages."""
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment_by_name(f"{hook.workflow}/{hook.client}")
        runs: list[Any] = []
        while True:
            page = api.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs


def assert_exactly_one_run_each(settings: Settings, hook: Hook, accepted: list[str]) -> None:
    rows = outbox(settings)
    assert set(rows) == set(accepted)
    runs = runs_of(hook)
    by_key = {r.idempotency_key: str(r.id) for r in runs}
    assert len(runs) == len(accepted)  # no duplicates, no run without a delivery
    assert by_key == {d: run for d, (_, run) in rows.items()}


@pytest.fixture
def pg_settings(
    tmp_path: Path, postgresql_database_url: str, prefect_server: str, echo_workflows: None
) -> Settings:
    settings = Settings(home=tmp_path, database_url=postgresql_database_url, work_pool=IDLE_POOL)
    upgrade(settings.platform_database_url)
    ensure_work_pool(IDLE_POOL)
    return settings


def test_dispatcher_killed_mid_burst_loses_and_duplicates_nothing(
    pg_settings: Settings, client_slug: str, tmp_path: Path
) -> None:
    hook = make_hook(pg_settings, client_slug, rate_limit=10**6)
    gateway, url = start_gateway_process(pg_settings, tmp_path / "gateway.log", dispatcher=False)
    # a Prefect server on SQLite locks under many concurrent creates: keep it modest
    args = ["dispatcher", "--lease-seconds", "10", "--concurrency", "3"]
    env = platform_env(pg_settings)
    victim = ChildProcess(args, env, tmp_path / "d1.log").start()
    survivor = ChildProcess(args, env, tmp_path / "d2.log").start()
    try:

        async def scenario() -> list[str]:
            sending = asyncio.create_task(burst(url, hook, COUNT))
            while len(outbox(pg_settings)) < COUNT // 3:
                await asyncio.sleep(0.05)
            victim.kill()  # SIGKILL: claimed rows stay leased, some runs created unrecorded
            accepted = await sending
            victim.start()
            return accepted

        accepted = asyncio.run(scenario())
        assert len(accepted) == COUNT
        wait_all_dispatched(pg_settings, COUNT)
        assert_exactly_one_run_each(pg_settings, hook, accepted)
    finally:
        for proc in (victim, survivor, gateway):
            proc.stop()


@pytest.fixture
def private_prefect(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Prefect server of our own (so the test can stop it), restartable on the same port/DB."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api}
    log = tmp_path / "prefect.log"
    state: dict[str, Any] = {"api": api, "env": env}

    def start() -> None:
        with open(log, "ab") as out:
            state["proc"] = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
                + ["--port", str(port), "--no-ui"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_http(f"{api}/health", timeout=90, proc=state["proc"])

    def stop() -> None:
        stop_process(state["proc"], timeout=20)

    state["start"], state["stop"] = start, stop
    start()
    try:
        yield state
    finally:
        if state["proc"].poll() is None:
            stop()


def test_prefect_down_during_burst_then_back_every_delivery_runs_once(
    private_prefect: dict[str, Any],
    tmp_path: Path,
    client_slug: str,
    echo_workflows: None,
) -> None:
    settings = Settings(home=tmp_path, work_pool=IDLE_POOL)
    upgrade(settings.platform_database_url)
    half = max(20, COUNT // 4)
    with temporary_settings(updates={PREFECT_API_URL: private_prefect["api"]}):
        ensure_work_pool(IDLE_POOL)
        hook = make_hook(settings, client_slug, rate_limit=10**6)
        gateway, url = start_gateway_process(
            settings, tmp_path / "gateway.log", PREFECT_API_URL=private_prefect["api"]
        )
        try:
            accepted = asyncio.run(burst(url, hook, half))
            private_prefect["stop"]()
            accepted += asyncio.run(burst(url, hook, half, start=half))
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["checks"]["prefect"] != "ok"
            assert any(s == "pending" for s, _ in outbox(settings).values())
            private_prefect["start"]()
            wait_all_dispatched(settings, 2 * half, stall=90)
            assert_exactly_one_run_each(settings, hook, accepted)
        finally:
            gateway.stop()


@pytest.fixture(scope="module")
def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: str
) -> Iterator[tuple[RunningGateway, Settings, dict[str, Hook]]]:
    from flows import catalog
    from tests.fixtures.gateway import serve
    from tests.workflows.echo_flow import ECHO

    catalog.WORKFLOWS[ECHO.slug] = ECHO
    settings = Settings(home=tmp_path_factory.mktemp("fuzz"), work_pool=IDLE_POOL)
    upgrade(settings.platform_database_url)
    ensure_work_pool(IDLE_POOL)
    hooks = {}
    for verifier in VERIFIERS:
        client = f"fuzz-{verifier}"
        hooks[verifier] = make_hook(settings, client, verifier=verifier, rate_limit=10**6)
    running = serve(settings, run_dispatcher=False)
    try:
        yield running, settings, hooks
    finally:
        running.stop()
        catalog.WORKFLOWS.pop(ECHO.slug, None)


header_names = st.sampled_from(
    [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-shopify-hmac-sha256",
        "authorization",
        "content-type",
        "content-length",
        "idempotency-key",
    ]
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
).map(str.strip)  # HTTP clients refuse to send surrounding whitespace


@fuzz_settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    verifier=st.sampled_from(VERIFIERS),
    headers=st.dictionaries(header_names, header_values, max_size=6),
    body=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)),
    sign=st.booleans(),
)
def test_fuzzed_requests_never_get_a_5xx(
    fuzz_target: tuple[RunningGateway, Settings, dict[str, Hook]],
    verifier: str,
    headers: dict[str, str],
    body: bytes,
    sign: bool,
) -> None:
    gateway, settings, hooks = fuzz_target
    hook = hooks[verifier]
    sent = dict(headers)
    if sign:  # a genuine signature over a fuzzed body exercises the JSON and model checks
        sent.update(signed(verifier, hook.secret, body, msg_id=f"m{hash(body)}"))
    sent.pop("content-length", None)
    with gateway.client() as http:
        before = len(outbox(settings))
        answer = http.post(
            hook.path, content=body, headers={k: v.encode("latin-1") for k, v in sent.items()}
        )
    assert answer.status_code < 500, answer.text
    if answer.status_code not in (200, 202):
        assert len(outbox(settings)) == before  # a rejection writes nothing
