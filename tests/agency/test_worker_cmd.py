"""``agency worker``: creates its ``agency-prefork`` pool if missing and starts a Prefect worker
of that type on it, which registers with the server. Real parts: the session's Prefect server,
the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from prefect.client.orchestration import get_client

from tests.fixtures._net import stop_process


def test_agency_worker_creates_its_pool_and_serves_it(prefect_server: str) -> None:
    pool = f"prefork-cli-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--pool", pool, "--limit", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        workers = []
        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as api:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    workers = api.read_workers_for_work_pool(pool)
                except Exception:  # noqa: BLE001 - the pool is not created yet
                    workers = []
                if workers:
                    break
                time.sleep(0.5)
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert workers, "no worker registered on the pool"
            assert api.read_work_pool(pool).type == "agency-prefork"
    finally:
        stop_process(proc, timeout=20)
