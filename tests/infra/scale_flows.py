"""The flow test_scale_out deploys (``flow.from_source`` on this directory): it records each
execution as a ``start`` and an ``end`` row in a PostgreSQL table, tagged with the worker that
ran it (``AGENCY_SCALE_WORKER``, set in each worker's environment) and its own pid."""

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
)
"""


def _record(database_url: str, phase: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO executions (flow_run_id, phase, worker, pid) VALUES (%s, %s, %s, %s)",
            (flow_run.id, phase, os.environ.get("AGENCY_SCALE_WORKER", "?"), os.getpid()),
        )


@flow(name="scale-record")
def record(database_url: str, seconds: float = 0.0) -> None:
    """Insert a ``start`` row, sleep ``seconds``, insert an ``end`` row."""
    _record(database_url, "start")
    time.sleep(seconds)
    _record(database_url, "end")
