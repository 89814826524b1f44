"""Start a throwaway Prefect server for a benchmark (call before importing Prefect).

Its database is SQLite in the private home, or with ``postgres=True`` a throwaway database
``bench_prefect_<hex>`` on the local PostgreSQL (``BENCH_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import make_url

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _postgres_database() -> Iterator[str]:
    """Create ``bench_prefect_<hex>`` on the local PostgreSQL, yield its asyncpg URL, drop it."""
    server = os.environ.get("BENCH_PG_URL") or PG_URL
    name = f"bench_prefect_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(server).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@contextmanager
def prefect_server(*, postgres: bool = False) -> Iterator[str]:
    """A `prefect server start` on a free port with a private home; yields the API URL.

    ``postgres=True`` stores the server's data in a throwaway PostgreSQL database instead of
    SQLite. ``BENCH_PREFECT_API_URL`` points the benchmark at a running server instead.
    """
    if os.environ.get("BENCH_PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = os.environ["BENCH_PREFECT_API_URL"]
        yield os.environ["PREFECT_API_URL"]
        return
    with ExitStack() as stack:
        if postgres:
            url = stack.enter_context(_postgres_database())
            os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = url
            stack.callback(os.environ.pop, "PREFECT_API_DATABASE_CONNECTION_URL", None)
        yield stack.enter_context(_server())


@contextmanager
def _server() -> Iterator[str]:
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
