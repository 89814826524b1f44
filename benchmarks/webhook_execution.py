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
from collections.abc import Callable
from dataclasses import dataclass
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
                    WebhookDelivery.batch_id,
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


def _finished(row: Any, runs: dict[str, Any]) -> bool:
    """A delivery is finished when its batch recorded its outcome, or its own run ended."""
    if row.batch_id is not None:
        return row.outcome is not None
    run = runs.get(row.flow_run_id or "")
    return run is not None and run.state is not None and run.state.is_final()


def _settle(db_url: str, client: str, count: int, stall: float) -> None:
    """Wait until every delivery is finished, failing after ``stall`` s without progress."""
    done, last = -1, time.monotonic()
    while time.monotonic() - last < stall:
        rows = _deliveries(db_url, client)
        runs = _runs(f"event_archive/{client}")
        now = sum(_finished(r, runs) for r in rows)
        if len(rows) == count and now == count:
            return
        if now != done:
            done, last = now, time.monotonic()
        time.sleep(1.0)
    raise TimeoutError(f"{client}: {count - done} of {count} events stuck for {stall}s")


@dataclass(frozen=True)
class Plan:
    """One activation of ``event_archive`` to send ``count`` webhooks to, in batch ``mode``
    (``off``, ``adaptive`` or ``always`` with ``batch``); ``lone`` single events are then sent
    one at a time, each after the previous completed, to time an event at rest."""

    mode: str
    count: int
    batch: Any = None
    lone: int = 0


def webhook_modes(
    work: Path, total: int, concurrency: int = 50, per_event: int | None = None
) -> dict[str, dict[str, float]]:
    """Run one run per event and batched (100 events, 1 s) against a fresh platform DB under
    ``work``; figures per mode.

    ``total`` webhooks per mode, or ``per_event`` for the one-run-per-event mode (each of its
    webhooks is a whole flow run: 2,000 take ~20 minutes on a 2-core machine)."""
    from services.webhooks import BatchPolicy

    plans = {
        "per_event": Plan("off", per_event or total),
        "batched": Plan("always", total, BatchPolicy(100, 1.0)),
    }
    return run_plans(work, plans, concurrency)


def run_plans(
    work: Path,
    plans: dict[str, Plan],
    concurrency: int = 50,
    report: Callable[[str, dict[str, float]], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Send each plan's webhooks (one plan after the other, each to its own client) through a
    real gateway and dispatcher to an ``agency-prefork`` worker; figures per plan, also given to
    ``report`` as soon as a plan is done."""
    from agency.db import upgrade
    from agency.settings import Settings
    from services import activate, add_client
    from services.webhooks import enable_webhook

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
    for name, plan in plans.items():
        client = f"wh-{name.replace('_', '-')}"
        add_client(settings, client, client)
        activate(settings, client, "event_archive", {}, None)
        hook = enable_webhook(
            settings,
            client,
            "event_archive",
            batch=plan.batch,
            mode=plan.mode,
            rate_limit_per_hour=10**9,
        )
        hooks[name] = (client, hook)
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
        for name, (client, hook) in hooks.items():
            plan = plans[name]
            path = f"/hooks/{client}/event_archive"
            results[name] = _burst(url, path, hook.secret, db_url, client, plan.count, concurrency)
            if plan.lone:
                results[name]["lone_event_s"] = _lone(url, path, hook.secret, db_url, client, plan)
            if report is not None:
                report(name, results[name])
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        stop_workers([worker])
    return results


def _burst(
    url: str, path: str, secret: str, db_url: str, client: str, count: int, concurrency: int
) -> dict[str, float]:
    """Send ``count`` webhooks at once and wait for all; the burst's figures."""
    start = time.time()
    latencies = asyncio.run(_send(url, path, secret, count, concurrency))
    accepted = count / (time.time() - start)
    _settle(db_url, client, count, stall=120)
    rows, runs = _deliveries(db_url, client), _runs(f"event_archive/{client}")
    ends = {i: r.end_time.timestamp() for i, r in runs.items() if r.end_time}
    to_done = [ends[r.flow_run_id] - r.received_at.timestamp() for r in rows]
    completed = [r for r in runs.values() if r.state and r.state.is_completed()]
    lost = sum(
        r.flow_run_id not in ends
        or not runs[r.flow_run_id].state.is_completed()
        or (r.batch_id is not None and r.outcome != "done")
        for r in rows
    )
    duplicates = len(runs) - len({r.flow_run_id for r in rows})  # runs without a delivery
    return {
        "webhooks": float(count),
        "accepted_per_s": accepted,
        "accept_p99_ms": percentile(latencies, 0.99) * 1000,
        "runs": float(len(completed)),
        "events_alone": float(sum(r.batch_id is None for r in rows)),
        "events_per_s": count / (max(ends.values()) - start),
        "p50_webhook_to_completed_s": percentile(to_done, 0.50),
        "p95_webhook_to_completed_s": percentile(to_done, 0.95),
        "lost": float(lost),
        "duplicates": float(duplicates),
    }


def _lone(url: str, path: str, secret: str, db_url: str, client: str, plan: Plan) -> float:
    """Median webhook → completed of ``plan.lone`` events sent one at a time, at rest."""
    time.sleep(25)  # the burst's in-flight window passes: the activation is at rest
    seen = plan.count
    times = []
    for _ in range(plan.lone):
        asyncio.run(_send(url, path, secret, 1, 1))
        seen += 1
        _settle(db_url, client, seen, stall=60)
        rows, runs = _deliveries(db_url, client), _runs(f"event_archive/{client}")
        last = max(rows, key=lambda r: r.received_at)
        end = runs[last.flow_run_id].end_time
        times.append(end.timestamp() - last.received_at.timestamp())
    return percentile(times, 0.5)
