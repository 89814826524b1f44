"""Production messaging: a Prefect server on PostgreSQL with prefect-redis as broker and cache
records every task run of a 3,600-task burst (the in-memory broker's fixed queue dropped 42 of
them in the same burst on this machine kind).

Real parts: PostgreSQL at 127.0.0.1:5432 (throwaway database), Redis from the ``redis_server``
fixture (the one on 6379 or one the session starts; a dedicated db index, flushed afterwards),
`prefect server start` and the flow in subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from tests.fixtures._net import free_port, prefect_auth_headers, stop_process, wait_http
from tests.fixtures.redis_server import RedisServer

# CPU-heavy and timed: under pytest-xdist (`make test`) the heavy tests share one worker, so
# they never overlap each other
pytestmark = pytest.mark.xdist_group("heavy")

BURST = int(os.environ.get("AGENCY_TEST_BURST", "3600"))
REDIS_DB = 11


def _count_task_runs(api: str, flow_run_id: UUID) -> int:
    response = httpx.post(
        f"{api}/task_runs/count",
        json={"flow_runs": {"id": {"any_": [str(flow_run_id)]}}},
        headers=prefect_auth_headers(),
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json())


@pytest.mark.timeout(900)
def test_burst_is_fully_recorded_with_redis_broker(
    postgresql_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    r = redis_server.client(REDIS_DB)
    r.flushdb()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": postgresql_database_url.replace(
            "postgresql+psycopg", "postgresql+asyncpg"
        ),
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_REDIS_MESSAGING_URL": redis_server.url(REDIS_DB),
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port), "--no-ui"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"{api}/health", timeout=120, proc=server)
        run = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("burst_flow.py")), str(BURST)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        flow_run_id = UUID(run.stdout.strip().splitlines()[-1])
        # the recorder consumes the Redis stream asynchronously: wait while it makes progress
        recorded, last_progress = 0, time.monotonic()
        while time.monotonic() - last_progress < 90:
            count = _count_task_runs(api, flow_run_id)
            if count > recorded:
                recorded, last_progress = count, time.monotonic()
            if recorded >= BURST:
                break
            time.sleep(2)
        assert recorded == BURST
        assert b"Subscription queue is full" not in (tmp_path / "server.log").read_bytes()
        assert r.dbsize() > 0, "the server did not use Redis as its broker"
    finally:
        stop_process(server, timeout=30)
        log.close()
        r.flushdb()
