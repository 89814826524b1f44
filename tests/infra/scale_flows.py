"""The flow test_scale_out deploys (``flow.from_source`` on this directory): it records each
execution as a ``start`` and an ``end`` row in a PostgreSQL table, tagged with the worker that
ran it (``AGENCY_SCALE_WORKER``, set in each worker's environment) and its own pid. A ``held``
run ends only once the test has released the runs (a row in ``releases``), so a run cannot end
before the test has killed its machine, however slowly a loaded machine starts the others."""

from __future__ import annotations

import os
import time

import psycopg
from prefect import flow
from prefect.runtime import flow_run

TABLE = """
CREATE TABLE IF NOT EXISTS executions (
    flow_run_id uuid NOT NULL,
    phase text NOT NULL,
    worker text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS releases (at timestamptz NOT NULL DEFAULT now())
"""
POLL = 0.5  # seconds between a held run's looks at ``releases``


def _record(database_url: str, phase: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO executions (flow_run_id, phase, worker, pid) VALUES (%s, %s, %s, %s)",
            (flow_run.id, phase, os.environ.get("AGENCY_SCALE_WORKER", "?"), os.getpid()),
        )


def _wait_released(database_url: str, seconds: float) -> None:
    """Until ``releases`` has a row, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(database_url, autocommit=True) as conn:
        query = "SELECT EXISTS (SELECT 1 FROM releases)"
        while not conn.execute(query).fetchone()[0] and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(POLL)


@flow(name="scale-record")
def record(database_url: str, seconds: float = 0.0, held: bool = False) -> None:
    """Insert a ``start`` row; sleep ``seconds`` or, if ``held``, wait until released (at most
    ``seconds``); insert an ``end`` row."""
    _record(database_url, "start")
    if held:
        _wait_released(database_url, seconds)
    else:
        time.sleep(seconds)
    _record(database_url, "end")
