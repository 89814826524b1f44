"""Batch runs: handle each event of ``events: [...]`` on its own and record its outcome.

A workflow whose manifest says ``accepts_batches`` is started by a batch trigger with
``events=[...]`` (the run is tagged ``batch:<id>``). It handles the events with
:func:`each_event`, so one bad event fails alone, and then calls :func:`record_outcomes`, which
stores done / failed (with the error) against each event's delivery in the platform DB; the
client API shows it at ``GET /api/v1/deliveries/<id>``::

    results = each_event(events, lambda event: handle(event))
    ...  # steps shared by the whole batch; on failure: results.fail_done(str(exc))
    record_outcomes(results)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agency.db import session_scope
from agency.db.outcomes import BATCH_TAG_PREFIX
from agency.db.outcomes import record_outcomes as store_outcomes
from agency.settings import get_settings

logger = logging.getLogger("agency.batch")


@dataclass
class EventResults:
    """Per event (in order): the handler's value, or the error that failed it."""

    values: list[Any] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)

    @property
    def done(self) -> list[Any]:
        """Values of the events that succeeded."""
        return [v for v, e in zip(self.values, self.errors, strict=True) if e is None]

    @property
    def failed(self) -> int:
        return sum(e is not None for e in self.errors)

    def fail_done(self, error: str) -> None:
        """A step shared by the batch failed after the events themselves succeeded."""
        self.errors = [e if e is not None else error for e in self.errors]
        self.values = [None] * len(self.values)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an event's failure, short enough for the outcome column."""
    return f"{type(exc).__name__}: {exc}"[:500]


def each_event(
    events: list[dict[str, Any]], handle: Callable[[dict[str, Any]], Any]
) -> EventResults:
    """Call ``handle`` on every event; an exception fails that event only."""
    results = EventResults()
    for index, event in enumerate(events):
        try:
            value, error = handle(event), None
        except Exception as exc:  # noqa: BLE001 - recorded against the event, the rest go on
            value, error = None, describe(exc)
            logger.warning("event %d of %d failed: %s", index + 1, len(events), error)
        results.values.append(value)
        results.errors.append(error)
    return results


def current_batch_id() -> str | None:
    """The ``batch:<id>`` tag of the current flow run, if a batch trigger started it."""
    from prefect.runtime import flow_run

    tag = next((t for t in flow_run.tags or [] if t.startswith(BATCH_TAG_PREFIX)), None)
    return tag.removeprefix(BATCH_TAG_PREFIX) if tag else None


def record_outcomes(results: EventResults, database_url: str | None = None) -> int:
    """Store each event's outcome against its delivery; 0 when the run is not a batch's."""
    batch_id = current_batch_id()
    if batch_id is None:
        return 0
    with session_scope(database_url or get_settings().platform_database_url) as session:
        return store_outcomes(session, batch_id, results.errors)
