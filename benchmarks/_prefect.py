"""Start a throwaway Prefect server for a benchmark (call before importing Prefect)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def prefect_server() -> Iterator[str]:
    """A `prefect server start` on a free port with a private home; yields the API URL."""
    if os.environ.get("BENCH_PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = os.environ["BENCH_PREFECT_API_URL"]
        yield os.environ["PREFECT_API_URL"]
        return
    home, port = tempfile.mkdtemp(prefix="bench-prefect-"), _free_port()
    api = f"http://127.0.0.1:{port}/api"
    os.environ.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_API_URL": api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "AGENCY_HOME": os.path.join(home, "agency"),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port), "--no-ui"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield api
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        proc.terminate()
        proc.wait(timeout=20)
