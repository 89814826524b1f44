"""Suspending a prefork child's run from outside: noticed by the worker, acted on by the engine.

Prefect's flow engine watches a deployed run for an outside ``suspend_flow_run`` itself: per run
it starts a thread with its own event loop, client and event-stream subscription (a flow-run
read and an event backfill query on the server). A prefork worker already polls the runs of
its children every second (for cancellations), so it watches for suspensions too and sends
:data:`SUSPEND_SIGNAL` to the child of a run it finds Suspended. The child then reads its run
and, if it is Suspended, records the request exactly where the engine's own watcher would: the
run stops at its next task and exits, to be rescheduled when resumed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import prefect.flow_engine
from prefect._flow_run_suspension import (
    FlowRunSuspensionRequest,
    is_suspended_flow_run_state,
    mark_flow_run_suspension_requested,
)
from prefect.client.orchestration import get_client
from prefect.logging.loggers import get_logger

__all__ = ["SUSPEND_SIGNAL", "watch_from_worker"]

#: Sent by the worker to a child whose run it found Suspended.
SUSPEND_SIGNAL = signal.SIGUSR2

_logger = get_logger("prefork.suspension")
_watched: dict[UUID, FlowRunSuspensionRequest] = {}


def _check(flow_run_id: UUID) -> None:
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except Exception:  # the worker signals again only for a new state; log and go on
        _logger.warning("Could not read flow run %s after a suspension signal", flow_run_id)
        return
    if is_suspended_flow_run_state(state) and state is not None:
        request = _watched.get(flow_run_id)
        if not mark_flow_run_suspension_requested(flow_run_id, state) and request is not None:
            request.mark_requested(state)


def _signalled(*_: object) -> None:
    # read the run in a thread: the main thread may be inside a request of its own client
    for flow_run_id in list(_watched):
        threading.Thread(target=_check, args=(flow_run_id,), daemon=True).start()


@contextmanager
def _watched_by_worker(
    flow_run_id: UUID, suspension_request: FlowRunSuspensionRequest, polling_interval: float = 10
) -> Iterator[None]:
    # same signature as prefect's observe_flow_run_suspension, which it replaces
    _watched[flow_run_id] = suspension_request
    try:
        yield
    finally:
        _watched.pop(flow_run_id, None)


def watch_from_worker() -> None:
    """In a child: let the worker's signal stand for the engine's per-run suspension watcher."""
    signal.signal(SUSPEND_SIGNAL, _signalled)
    prefect.flow_engine.observe_flow_run_suspension = _watched_by_worker  # type: ignore[assignment]
