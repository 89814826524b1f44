"""Start a throwaway Prefect server for a benchmark (call before importing Prefect).

Its database is SQLite in the private home, or with ``postgres=True`` a throwaway database
``bench_prefect_<hex>`` on the local PostgreSQL (``BENCH_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
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
_QUIET: dict = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


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


#: Redis for a multi-process server's messaging (``BENCH_REDIS_URL``; databases 14 and 15).
REDIS_URL = "redis://127.0.0.1:6379"


def _redis_settings() -> dict[str, str]:
    """The production layout's messaging settings (as in ``infra/compose.yaml``), on Redis
    databases 14 and 15, emptied first."""
    import redis

    base = os.environ.get("BENCH_REDIS_URL") or REDIS_URL
    for db in (14, 15):
        redis.Redis.from_url(f"{base}/{db}").flushdb()
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_REDIS_MESSAGING_URL": f"{base}/14",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_SERVER_DOCKET_URL": f"{base}/15",
    }


@contextmanager
def prefect_server(*, postgres: bool = False, workers: int = 1) -> Iterator[str]:
    """A `prefect server start` on a free port with a private home; yields the API URL.

    ``postgres=True`` stores the server's data in a throwaway PostgreSQL database instead of
    SQLite. ``workers`` > 1 (PostgreSQL only) runs the production layout instead: that many API
    processes (``--workers``) plus ``prefect server services start``, with messaging on Redis.
    ``BENCH_PREFECT_API_URL`` points the benchmark at a running server instead.
    """
    if os.environ.get("BENCH_PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = os.environ["BENCH_PREFECT_API_URL"]
        yield os.environ["PREFECT_API_URL"]
        return
    if workers > 1 and not postgres:
        raise ValueError("a multi-process Prefect server needs PostgreSQL")
    with ExitStack() as stack:
        if postgres:
            url = stack.enter_context(_postgres_database())
            os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = url
            stack.callback(os.environ.pop, "PREFECT_API_DATABASE_CONNECTION_URL", None)
        if workers > 1:
            extra = _redis_settings()
            os.environ.update(extra)
            for key in extra:
                stack.callback(os.environ.pop, key, None)
        yield stack.enter_context(_server(workers))


@contextmanager
def _server(workers: int = 1) -> Iterator[str]:
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
    prefect = [sys.executable, "-m", "prefect"]
    start = [*prefect, "server", "start", "--port", str(port), "--no-ui"]
    if workers > 1:
        # the API processes would each migrate a fresh database at once, and race
        subprocess.run([*prefect, "server", "database", "upgrade", "-y"], check=True, **_QUIET)
        # one process tree (its CPU is charged to the server): the services run in the
        # background of a shell that then becomes the API's parent process
        services = shlex.join([*prefect, "server", "services", "start"])
        start = ["sh", "-c", f"{services} & exec {shlex.join(start)} --workers {workers}"]
    proc = subprocess.Popen(start, env=os.environ.copy(), start_new_session=True, **_QUIET)
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
        os.killpg(proc.pid, signal.SIGTERM)  # the API and, if any, the services process
        proc.wait(timeout=20)
