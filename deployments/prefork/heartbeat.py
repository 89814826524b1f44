"""Flow-run heartbeats that the prefork worker emits for its children, from its event loop.

Prefect's engine emits ``prefect.flow-run.heartbeat`` from a thread in the run's own process,
first right after the run enters Running, then every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds; :mod:`deployments.recovery` crashes and reschedules a run whose heartbeats stop. A
prefork child runs with that thread off (see :mod:`deployments.prefork.child`), and its worker
emits the same events instead: one timer per running child on the worker's event loop, the
event built by the engine's own helpers, so the heartbeats stop when the worker dies (its
children die with it). The first heartbeat follows the Running state, as the engine's does (the
crash automation also starts waiting at Running, so a run whose worker dies before its first
heartbeat is covered either way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from prefect.client.schemas.objects import Flow, FlowRun
from prefect.events import RelatedResource
from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL, BaseFlowRunEngine
from prefect.settings import get_current_settings
from prefect.settings.models.flows import FlowsSettings

__all__ = ["FREQUENCY_VARIABLES", "Heartbeats", "heartbeat_seconds"]

#: The run's environment variables that set its heartbeat frequency (Prefect's name, then its
#: legacy alias), as they would for a run in a process of its own.
FREQUENCY_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")

logger = logging.getLogger(__name__)


def heartbeat_seconds(env: Mapping[str, str | None]) -> int | None:
    """Seconds between a run's heartbeats: its environment's ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
    if it sets one, else this process's setting; None when heartbeats are off. Raises pydantic's
    ``ValidationError`` for a value Prefect would reject (not a whole number, or below 30)."""
    raw = next((env[name] for name in FREQUENCY_VARIABLES if env.get(name) is not None), None)
    if raw is None:
        frequency = get_current_settings().flows.heartbeat_frequency
    else:
        frequency = FlowsSettings(heartbeat_frequency=raw).heartbeat_frequency
    return None if frequency is None else max(frequency, MINIMUM_HEARTBEAT_INTERVAL)


@dataclass
class _Beat:
    flow: Flow | None
    interval: float
    engine: BaseFlowRunEngine[Any, Any] | None = None
    event: tuple[dict[str, str], list[RelatedResource]] | None = None
    timer: asyncio.TimerHandle | None = None


class Heartbeats:
    """The heartbeats of the runs one worker executes; use from the worker's event loop.

    ``expect`` a run when its child is forked, ``start`` it once the run is seen Running
    (heartbeat now, then every ``interval`` seconds), ``stop`` it when the child has exited.
    """

    def __init__(self) -> None:
        self._beats: dict[UUID, _Beat] = {}

    @property
    def waiting(self) -> list[UUID]:
        """Runs expected to beat that have not been seen Running yet."""
        return [run_id for run_id, beat in self._beats.items() if beat.engine is None]

    def expect(self, flow_run_id: UUID, flow: Flow | None, interval: float) -> None:
        """Register a run whose child was just forked (``flow``: the run's flow, for its name)."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._beats[flow_run_id] = _Beat(flow, interval)

    def start(self, flow_run: FlowRun) -> None:
        """The run is Running (as read from the API): emit its first heartbeat and schedule the
        next ones. Nothing happens for a run not expected, or already started."""
        beat = self._beats.get(flow_run.id)
        if beat is None or beat.engine is not None:
            return
        # the engine's own event template: same resource, related flow, deployment and tags
        beat.engine = BaseFlowRunEngine(
            flow=cast(Any, beat.flow), flow_run=flow_run, flow_run_id=flow_run.id
        )
        beat.event = beat.engine._build_heartbeat_event_template()
        self._beat(flow_run.id)

    def stop(self, flow_run_id: UUID) -> None:
        """No more heartbeats for this run."""
        beat = self._beats.pop(flow_run_id, None)
        if beat is not None and beat.timer is not None:
            beat.timer.cancel()

    def _beat(self, flow_run_id: UUID) -> None:
        beat = self._beats.get(flow_run_id)
        if beat is None or beat.engine is None or beat.event is None:
            return
        try:  # queued for Prefect's events worker thread: no I/O on the event loop
            beat.engine._emit_flow_run_heartbeat(*beat.event)
        except Exception:  # a missed heartbeat is not worth losing the next ones
            logger.debug("Could not emit the heartbeat of %s", flow_run_id, exc_info=True)
        beat.timer = asyncio.get_running_loop().call_later(beat.interval, self._beat, flow_run_id)
