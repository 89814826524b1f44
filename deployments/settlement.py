"""Outcomes of batch runs that ended without recording them.

A batch run records each event's outcome itself (``flows.batch.record_outcomes``), as its last
step. A run that never gets there (its process was killed and the worker marked it Crashed, a
shared step raised, it was cancelled, or its flow forgot to record) would leave its events with
no outcome for ever. The dispatcher calls :func:`settle_ended_batches` every
``settle_seconds``: it reads the runs of dispatched batches that still have events without an
outcome, in pages of ``PAGE`` (one Prefect request each), and once such a run has been in a
final state for ``grace_seconds`` (a crashed run may still be rescheduled by
:mod:`deployments.recovery` meanwhile), fails those events with the reason, for example ``Its
flow run <id> ended Crashed before recording this event's outcome.`` (not the state's message,
which may quote an exception carrying a credential; the run's logs, masked, say more).
A run that is retried later and records its outcomes overwrites them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import anyio
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType

from agency.db import session_scope, utcnow
from agency.db.outcomes import DispatchedBatch, fail_unrecorded, unsettled_batches

__all__ = ["PAGE", "settle_ended_batches", "why_unrecorded"]

PAGE = 200
MAX_PAGES = 10  # per call: a backlog of runs still going is looked at again next time


def why_unrecorded(run: FlowRun | None, run_id: str, ended_before: datetime) -> str | None:
    """Why the events of the batch run ``run`` (None: not found) have no outcome, if its run is
    over: in a final state since before ``ended_before``, or gone; else None."""
    if run is None:
        return f"Its flow run {run_id} no longer exists in Prefect."
    state = run.state
    if state is None or not state.is_final():
        return None
    ended = run.end_time or state.timestamp
    if ended is not None and ended > ended_before:
        return None
    if state.type == StateType.COMPLETED:
        return f"Its flow run {run_id} completed without recording this event's outcome."
    # the state's message is left out: it may quote an exception raised with a credential in
    # it, and this process cannot mask the run's secrets (the client API shows this text)
    return f"Its flow run {run_id} ended {state.name} before recording this event's outcome."


def _page(
    database_url: str, before: datetime, after: DispatchedBatch | None
) -> list[DispatchedBatch]:
    with session_scope(database_url) as session:
        return unsettled_batches(session, before, PAGE, after)


def _fail(database_url: str, reasons: dict[str, str]) -> int:
    with session_scope(database_url) as session:
        return sum(fail_unrecorded(session, batch, why) for batch, why in reasons.items())


async def settle_ended_batches(
    api: PrefectClient, database_url: str, grace_seconds: float = 30.0
) -> int:
    """Fail, with the reason, the unrecorded events of batches whose run is over; return how
    many events were failed."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    failed, after = 0, None
    for _ in range(MAX_PAGES):
        page = await anyio.to_thread.run_sync(_page, database_url, cutoff, after)
        if not page:
            break
        runs = await api.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(b.flow_run_id) for b in page])
            ),
            limit=len(page),
        )
        by_id = {str(run.id): run for run in runs}
        reasons = {
            b.id: why
            for b in page
            if (why := why_unrecorded(by_id.get(b.flow_run_id), b.flow_run_id, cutoff))
        }
        if reasons:
            failed += await anyio.to_thread.run_sync(_fail, database_url, reasons)
        if len(page) < PAGE:
            break
        after = page[-1]
    return failed
