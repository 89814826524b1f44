"""Webhook gateway load: accept rate and latency, dispatcher drain rate vs bare Prefect, end-to-end
latency at a steady rate below capacity, and lost deliveries.

Run ``python -m benchmarks.webhook_load`` (``--quick`` for a run under a minute). It starts its
own Prefect server (on PostgreSQL when reachable, else SQLite) and, per platform database
(SQLite, and PostgreSQL when reachable at ``AGENCY_TEST_PG_URL`` or
``postgresql://postgres@127.0.0.1:5432/postgres``), a gateway process without dispatcher; this
process sends signed Standard Webhooks requests over loopback. Then ``agency dispatcher`` drains
the backlog while bare ``create_flow_run_from_deployment`` calls at the same concurrency measure
Prefect's own creation rate, alternating bare / ours / bare (as many bare runs in all as the
backlog holds). Prints ``metric=value`` lines; the headline ratio last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

PROJECT_DIR = Path(__file__).resolve().parent.parent
CONCURRENCY = 50
DISPATCH_CONCURRENCY = 10


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_server() -> Any:
    from sqlalchemy import make_url

    return make_url(
        os.environ.get("AGENCY_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def _pg_admin(sql: str) -> bool:
    import psycopg

    server = _pg_server()
    try:
        with psycopg.connect(
            host=server.host,
            port=server.port or 5432,
            user=server.username or "postgres",
            password=server.password or None,
            dbname=server.database or "postgres",
            autocommit=True,
            connect_timeout=3,
        ) as conn:
            conn.execute(sql)
    except psycopg.Error:
        return False
    return True


def _pg_database(driver: str, created: list[str]) -> str | None:
    """A fresh PostgreSQL database URL with ``driver``, or ``None`` when PostgreSQL is down."""
    name = f"agency_bench_{secrets.token_hex(4)}"
    if not _pg_admin(f'CREATE DATABASE "{name}"'):
        return None
    created.append(name)
    url = _pg_server().set(drivername=driver, database=name)
    return url.render_as_string(hide_password=False)


def _signed(secret: str, count: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` bodies with the headers a Standard Webhooks sender puts on them."""
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    signer = Webhook(secret)
    requests = []
    for i in range(count):
        body = json.dumps({"n": i, "id": secrets.token_hex(8)})
        msg_id = f"msg_{secrets.token_hex(8)}"
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": signer.sign(msg_id, datetime.now(UTC), body),
            "content-type": "application/json",
        }
        requests.append((body, headers))
    return requests


@dataclass
class Load:
    """What one sending run measured: per-request latencies, wall and gateway CPU seconds."""

    latencies: list[float]
    seconds: float
    cpu_seconds: float


async def _load(
    url: str, path: str, secret: str, count: int, concurrency: int, warmup: int = 0, pid: int = 0
) -> Load:
    """POST ``count`` signed webhooks at ``concurrency``, measuring latencies, wall time and the
    CPU time of process ``pid`` (the gateway; 0: none).

    Requests are signed before the clock starts and sent with aiohttp (C HTTP parser): the
    sender shares the machine's 2 cores with the gateway, and httpx plus signing cost it ~5 ms
    of CPU per request, more than the gateway itself, which capped the measured accept rate.
    ``warmup`` requests go first over the same keep-alive connections, unmeasured, so the
    figures are the steady state of a sender's connection pool, not 50 TCP handshakes at once.
    """
    import aiohttp

    todo = _signed(secret, count + warmup)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as http:

        async def worker(queue: list[tuple[str, dict[str, str]]], out: list[float]) -> None:
            while queue:
                body, headers = queue.pop()
                start = time.perf_counter()
                async with http.post(path, data=body, headers=headers) as answer:
                    text = await answer.text()
                    out.append(time.perf_counter() - start)
                    if answer.status != 202:
                        raise RuntimeError(f"{answer.status}: {text}")

        first, todo = todo[:warmup], todo[warmup:]
        await asyncio.gather(*(worker(first, []) for _ in range(concurrency)))
        cpu, start = _cpu_seconds(pid) if pid else 0.0, time.perf_counter()
        await asyncio.gather(*(worker(todo, latencies) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu = (_cpu_seconds(pid) - cpu) if pid else 0.0
    return Load(latencies, seconds, cpu)


async def _send(url: str, path: str, secret: str, count: int, concurrency: int) -> list[float]:
    """POST ``count`` signed webhooks at ``concurrency``; return each one's latency (s)."""
    return (await _load(url, path, secret, count, concurrency)).latencies


async def _bare(deployment_id: UUID, count: int, concurrency: int) -> float:
    """Runs/s of bare create_flow_run_from_deployment (idempotency key each) at ``concurrency``."""
    from prefect.client.orchestration import get_client

    todo = list(range(count))
    async with get_client() as api:

        async def worker() -> None:
            while todo:
                todo.pop()
                await api.create_flow_run_from_deployment(
                    deployment_id,
                    parameters={"event": {"bare": True}},
                    idempotency_key=secrets.token_hex(16),
                )

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


def _counts(db_url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from agency.db import WebhookDelivery, session_scope

    with session_scope(db_url) as session:
        total = session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0
        pending = (
            session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status != "dispatched")
            )
            or 0
        )
    return int(total), int(pending)


def _drain(db_url: str, env: dict[str, str], logs: Path) -> float:
    """Start ``agency dispatcher``, time the backlog drain, stop it; return runs/s."""
    total, pending = _counts(db_url)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "dispatcher",
            "--concurrency",
            str(DISPATCH_CONCURRENCY),
        ],
        env=env,
        stdout=open(logs / "dispatcher.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        first = None
        while True:
            _, now_pending = _counts(db_url)
            if first is None and now_pending < pending:
                first = time.perf_counter()  # the dispatcher is up: start the clock here
            if now_pending == 0:
                break
            if proc.poll() is not None:
                raise RuntimeError("dispatcher exited; see dispatcher.log")
            time.sleep(0.05)
        elapsed = time.perf_counter() - (first or start)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return pending / elapsed


def _steady(
    url: str, path: str, secret: str, db_url: str, env: dict[str, str], logs: Path, seconds: float
) -> list[float]:
    """5 requests/s with a dispatcher running; webhook → run created latencies (s)."""
    from sqlalchemy import select

    from agency.db import WebhookDelivery, session_scope

    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dispatcher"],
        env=env,
        stdout=open(logs / "dispatcher.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        # one warm-up delivery: measure only once the dispatcher is up and dispatching
        asyncio.run(_send(url, path, secret, 1, 1))
        deadline = time.time() + 120
        while time.time() < deadline and _counts(db_url)[1]:
            time.sleep(0.1)
        ids = []
        from datetime import UTC, datetime

        from standardwebhooks.webhooks import Webhook

        signer = Webhook(secret)
        sent_at: dict[str, float] = {}
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(int(seconds * 5)):
                tick = time.time()
                body = json.dumps({"steady": i})
                msg_id = f"steady_{secrets.token_hex(8)}"
                answer = http.post(
                    path,
                    content=body,
                    headers={
                        "webhook-id": msg_id,
                        "webhook-timestamp": str(int(tick)),
                        "webhook-signature": signer.sign(msg_id, datetime.now(UTC), body),
                        "content-type": "application/json",
                    },
                )
                delivery = answer.json()["delivery_id"]
                ids.append(delivery)
                sent_at[delivery] = tick
                time.sleep(max(0.0, 0.2 - (time.time() - tick)))
        deadline = time.time() + 60
        while time.time() < deadline and _counts(db_url)[1]:
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with session_scope(db_url) as session:
        runs = dict(
            session.execute(
                select(WebhookDelivery.id, WebhookDelivery.flow_run_id).where(
                    WebhookDelivery.id.in_(ids)
                )
            ).all()
        )
    with get_client(sync_client=True) as api:
        created = {
            str(r.id): r.created.timestamp()
            for r in api.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[UUID(r) for r in runs.values() if r])
                ),
                limit=len(ids),
            )
        }
    return [created[runs[d]] - sent_at[d] for d in ids if runs.get(d) in created]


def _lost(db_url: str, deployment_id: UUID) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter
    from sqlalchemy import select

    from agency.db import WebhookDelivery, session_scope

    with session_scope(db_url) as session:
        deliveries = dict(
            session.execute(select(WebhookDelivery.id, WebhookDelivery.flow_run_id)).all()
        )
    keys: dict[str, int] = {}
    with get_client(sync_client=True) as api:
        offset = 0
        while True:
            page = api.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}),
                limit=200,
                offset=offset,
            )
            for run in page:
                if run.idempotency_key:
                    keys[run.idempotency_key] = keys.get(run.idempotency_key, 0) + 1
            offset += len(page)
            if len(page) < 200:
                break
    return sum(1 for d in deliveries if keys.get(d) != 1 or deliveries[d] is None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, under a minute")
    args = parser.parse_args()
    requests = 150 if args.quick else 2000
    # bare creations before and after the drain add up to the drained backlog: the server
    # slows as its tables and event backlog grow, so both sides must create as many runs
    bare_runs = requests // 2
    steady_seconds = 3.0 if args.quick else 20.0

    work = Path(tempfile.mkdtemp(prefix="agency-bench-"))
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    import signal

    from cryptography.fernet import Fernet

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    created: list[str] = []
    # Prefect on PostgreSQL like the measured figures; SQLite locks under load
    prefect_db = _pg_database("postgresql+asyncpg", created)
    if prefect_db:
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_db
    print(f"prefect_database={'postgresql' if prefect_db else 'sqlite'}", flush=True)
    os.environ.update(
        {
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
        ],
        stdout=open(work / "prefect.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    results: dict[str, dict[str, float]] = {}
    try:
        _wait(f"{api_url}/health")
        sys.path.insert(0, str(PROJECT_DIR))
        from agency.db import upgrade
        from agency.settings import Settings
        from deployments import ensure_work_pool
        from flows import catalog
        from services import activate, add_client
        from services.webhooks import enable_webhook
        from tests.workflows.echo_flow import ECHO

        catalog.WORKFLOWS[ECHO.slug] = ECHO
        pool = "agency-bench"
        ensure_work_pool(pool)
        backends = {"sqlite": f"sqlite:///{work / 'agency.db'}"}
        pg = _pg_database("postgresql+psycopg", created)
        if pg:
            backends["postgresql"] = pg
        for backend, db_url in backends.items():
            home = work / backend
            settings = Settings(home=home, database_url=db_url, work_pool=pool)
            upgrade(db_url)
            client = f"bench-{backend[:2]}-{secrets.token_hex(2)}"
            add_client(settings, client, client)
            view = activate(settings, client, "echo", {}, None)
            deployment_id = UUID(str(view.deployment_id))
            hook = enable_webhook(settings, client, "echo", rate_limit_per_hour=10**9)
            env = {
                **os.environ,
                "AGENCY_HOME": str(home),
                "AGENCY_DATABASE_URL": db_url,
                "PYTHONPATH": str(PROJECT_DIR),
            }
            gw_port = _free_port()
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "gateway",
                    "--no-dispatcher",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(gw_port),
                ],
                env=env,
                stdout=open(work / f"gateway-{backend}.log", "wb"),
                stderr=subprocess.STDOUT,
                cwd=PROJECT_DIR,
            )
            url = f"http://127.0.0.1:{gw_port}"
            path = f"/hooks/{client}/echo"
            try:
                _wait(f"{url}/healthz")
                warmup = 4 * CONCURRENCY
                load = asyncio.run(
                    _load(url, path, hook.secret, requests, CONCURRENCY, warmup, gateway.pid)
                )
                latencies, accept_rate = load.latencies, requests / load.seconds
                gateway_cpu = load.cpu_seconds
                # alternate: bare, ours (drain the backlog), bare again
                bare1 = asyncio.run(_bare(deployment_id, bare_runs, DISPATCH_CONCURRENCY))
                drain = _drain(db_url, env, work)
                bare2 = asyncio.run(_bare(deployment_id, bare_runs, DISPATCH_CONCURRENCY))
                steady = _steady(url, path, hook.secret, db_url, env, work, steady_seconds)
                lost = _lost(db_url, deployment_id)
            finally:
                gateway.terminate()
                gateway.wait(timeout=20)
            bare = statistics.median([bare1, bare2])
            results[backend] = {
                "accepted_per_s": accept_rate,
                "accept_p50_ms": _pct(latencies, 0.5) * 1000,
                "accept_p99_ms": _pct(latencies, 0.99) * 1000,
                "gateway_cpu_ms_per_request": gateway_cpu / requests * 1000,
                "drain_runs_per_s": drain,
                "bare_runs_per_s": bare,
                "dispatch_vs_bare": drain / bare,
                "e2e_p50_ms": _pct(steady, 0.5) * 1000 if steady else float("nan"),
                "e2e_p95_ms": _pct(steady, 0.95) * 1000 if steady else float("nan"),
                "lost": float(lost),
            }
            for name, value in results[backend].items():
                print(f"{backend}.{name}={value:.2f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        from agency.db import dispose_engines

        dispose_engines()
        for name in created:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    worst = {
        "lost": sum(r["lost"] for r in results.values()),
        "accept_p99_ms": max(r["accept_p99_ms"] for r in results.values()),
        "accepted_per_s": min(r["accepted_per_s"] for r in results.values()),
        "dispatch_vs_bare": min(r["dispatch_vs_bare"] for r in results.values()),
    }
    print(f"lost={int(worst['lost'])}")
    print(f"accept_p99_ms={worst['accept_p99_ms']:.1f}")
    print(f"accepted_per_s={worst['accepted_per_s']:.0f}")
    print(f"dispatch_vs_bare={worst['dispatch_vs_bare']:.2f}")


if __name__ == "__main__":
    main()
