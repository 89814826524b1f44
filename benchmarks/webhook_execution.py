"""The webhook half of ``execution_throughput``: signed webhooks through the gateway to completed
runs of the 2-node ``event_archive`` workflow on an ``agency-prefork`` worker, one run per event
and batched (``max_events: 100, max_wait_s: 1``).

Call :func:`webhook_modes` inside a running Prefect server (``benchmarks._prefect``). Per mode it
returns accepted/s, events completed/s (events / first accept → last run end), p95 webhook →
completed (delivery received → its run's end) and lost (deliveries without exactly one completed
run, or, batched, without a ``done`` outcome).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._runs import create_pools, percentile, start_worker, stop_workers
from benchmarks.webhook_load import _free_port, _send, _wait

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _deliveries(db_url: str, client: str) -> list[Any]:
    from sqlalchemy import select

    from agency.db import WebhookDelivery, session_scope

    with session_scope(db_url) as session:
        return list(
            session.execute(
                select(
                    WebhookDelivery.received_at,
                    WebhookDelivery.flow_run_id,
                    WebhookDelivery.outcome,
                ).where(WebhookDelivery.client == client)
            ).all()
        )


def _runs(deployment: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter

    with get_client(sync_client=True) as api:
        deployment_id = api.read_deployment_by_name(deployment).id
        runs: list[Any] = []
        while True:
            page = api.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return {str(r.id): r for r in runs}


def _settle(db_url: str, client: str, count: int, batched: bool, stall: float) -> None:
    """Wait until every delivery is done, failing after ``stall`` s without progress."""
    done, last = -1, time.monotonic()
    while time.monotonic() - last < stall:
        rows = _deliveries(db_url, client)
        if batched:
            now = sum(r.outcome is not None for r in rows)
        else:
            runs = _runs(f"event_archive/{client}")
            now = sum(
                r.flow_run_id in runs
                and runs[r.flow_run_id].state is not None
                and runs[r.flow_run_id].state.is_final()
                for r in rows
            )
        if len(rows) == count and now == count:
            return
        if now != done:
            done, last = now, time.monotonic()
        time.sleep(1.0)
    raise TimeoutError(f"{client}: {count - done} of {count} events stuck for {stall}s")


def webhook_modes(
    work: Path, total: int, concurrency: int = 50, per_event: int | None = None
) -> dict[str, dict[str, float]]:
    """Run both webhook modes against a fresh platform DB under ``work``; figures per mode.

    ``total`` webhooks per mode, or ``per_event`` for the one-run-per-event mode (each of its
    webhooks is a whole flow run: 2,000 take ~20 minutes on a 2-core machine)."""
    from agency.db import upgrade
    from agency.settings import Settings
    from services import activate, add_client
    from services.webhooks import BatchPolicy, enable_webhook

    home = work / "webhooks"
    db_url = f"sqlite:///{home / 'agency.db'}"
    settings = Settings(
        home=home, database_url=db_url, work_pool="bench-wh", webhook_work_pool="bench-wh-prefork"
    )
    home.mkdir(parents=True, exist_ok=True)
    upgrade(db_url)
    asyncio.run(create_pools({"bench-wh": "process", "bench-wh-prefork": "agency-prefork"}))
    env = {
        **os.environ,
        "AGENCY_HOME": str(home),
        "AGENCY_DATABASE_URL": db_url,
        "AGENCY_WEBHOOK_WORK_POOL": "bench-wh-prefork",
        "PYTHONPATH": str(PROJECT_DIR),
    }
    hooks = {}
    for mode, batch in (("per_event", None), ("batched", BatchPolicy(100, 1.0))):
        client = f"wh-{mode.replace('_', '-')}"
        add_client(settings, client, client)
        activate(settings, client, "event_archive", {}, None)
        hook = enable_webhook(
            settings, client, "event_archive", batch=batch, rate_limit_per_hour=10**9
        )
        hooks[mode] = (client, hook)
    os.environ.update({k: env[k] for k in ("AGENCY_HOME", "AGENCY_DATABASE_URL")})
    worker = start_worker("bench-wh-prefork", "agency-prefork", 8, work / "wh-worker.log")
    port = _free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "gateway", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=open(work / "wh-gateway.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        cwd=PROJECT_DIR,
    )
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, float]] = {}
    try:
        _wait(f"{url}/healthz")
        for mode, (client, hook) in hooks.items():
            path = f"/hooks/{client}/event_archive"
            count = per_event if mode == "per_event" and per_event else total
            start = time.time()
            latencies = asyncio.run(_send(url, path, hook.secret, count, concurrency))
            accepted = count / (time.time() - start)
            _settle(db_url, client, count, mode == "batched", stall=120)
            rows, runs = _deliveries(db_url, client), _runs(f"event_archive/{client}")
            ends = {i: r.end_time.timestamp() for i, r in runs.items() if r.end_time}
            to_done = [ends[r.flow_run_id] - r.received_at.timestamp() for r in rows]
            completed = [r for r in runs.values() if r.state and r.state.is_completed()]
            lost = sum(
                r.flow_run_id not in ends
                or not runs[r.flow_run_id].state.is_completed()
                or (mode == "batched" and r.outcome != "done")
                for r in rows
            ) + (len(runs) - len({r.flow_run_id for r in rows}))  # runs without a delivery
            results[mode] = {
                "webhooks": float(count),
                "accepted_per_s": accepted,
                "accept_p99_ms": percentile(latencies, 0.99) * 1000,
                "runs": float(len(completed)),
                "events_per_s": count / (max(ends.values()) - start),
                "p95_webhook_to_completed_s": percentile(to_done, 0.95),
                "lost": float(lost),
            }
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        stop_workers([worker])
    return results
