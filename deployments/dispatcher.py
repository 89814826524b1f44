"""The outbox dispatcher: turns each accepted delivery into exactly one Prefect flow run.

For each due delivery it calls ``POST /api/deployments/<id>/create_flow_run`` with
``idempotency_key=<delivery id>`` and ``parameters={"event": <payload>}`` (Prefect merges the
deployment's own ``client`` and ``settings``), records the run id, and emits the Prefect event
``agency.webhook.received``. Because Prefect answers a repeated idempotency key with the first
run, a dispatcher killed between creating a run and recording it creates no second run when the
delivery's lease runs out and it is tried again. When Prefect is unreachable or answers 5xx, the
delivery stays pending and is retried with exponential backoff; nothing is dropped.

Run it in the gateway process (``agency gateway``) or alone (``agency dispatcher``); several may
run at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from uuid import UUID

import anyio
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from agency.db import session_scope, utcnow
from deployments.gateway.metrics import Metrics
from deployments.gateway.outbox import Claimed, claim_due, mark_dispatched, mark_failed, mark_retry

logger = logging.getLogger("agency.dispatcher")

EVENT_NAME = "agency.webhook.received"


@dataclass
class Outcome:
    """What happened to one claimed delivery."""

    delivery: Claimed
    flow_run_id: str | None = None
    retry_after: float | None = None
    error: str | None = None


class Dispatcher:
    """Polls the outbox of ``database_url`` and creates flow runs, ``concurrency`` at a time."""

    def __init__(
        self,
        database_url: str,
        *,
        metrics: Metrics | None = None,
        batch_size: int | None = None,
        concurrency: int = 10,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.2,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        self.database_url = database_url
        self.metrics = metrics or Metrics()
        # small batches keep a claim well inside its lease on a slow Prefect server
        self.batch_size = batch_size or 5 * concurrency
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.wakeup = asyncio.Event()

    def backoff(self, attempts: int) -> float:
        """Seconds before try ``attempts + 1``: 0.5 s doubling, capped, with jitter."""
        base = min(self.max_backoff_seconds, 0.5 * 2 ** min(attempts, 16))
        return base * random.uniform(0.75, 1.25)

    def _claim(self) -> list[Claimed]:
        with session_scope(self.database_url) as session:
            return claim_due(session, self.batch_size, self.lease_seconds)

    def _record(self, outcomes: list[Outcome]) -> None:
        with session_scope(self.database_url) as session:
            for o in outcomes:
                attempts = o.delivery.attempts + 1
                if o.flow_run_id is not None:
                    mark_dispatched(session, o.delivery.id, o.flow_run_id)
                elif o.retry_after is not None:
                    mark_retry(session, o.delivery.id, attempts, o.retry_after, o.error or "")
                else:
                    mark_failed(session, o.delivery.id, attempts, o.error or "")

    async def _dispatch(self, api: PrefectClient, delivery: Claimed) -> Outcome:
        if delivery.deployment_id is None:
            return Outcome(delivery, error="The activation has no deployment (deactivated).")
        try:
            run = await api.create_flow_run_from_deployment(
                UUID(delivery.deployment_id),
                parameters={"event": delivery.payload},
                idempotency_key=delivery.id,
            )
        except ObjectNotFound:
            return Outcome(delivery, error="The activation's deployment no longer exists.")
        except PrefectHTTPStatusError as exc:
            status = exc.response.status_code
            if status >= 500 or status in (408, 429):
                self.metrics.dispatch_errors.inc()
                return Outcome(
                    delivery, retry_after=self.backoff(delivery.attempts), error=str(exc)
                )
            return Outcome(delivery, error=f"Prefect refused the run: HTTP {status}.")
        except (httpx.HTTPError, OSError, RuntimeError) as exc:
            self.metrics.dispatch_errors.inc()
            return Outcome(
                delivery,
                retry_after=self.backoff(delivery.attempts),
                error=f"Prefect unreachable: {exc.__class__.__name__}",
            )
        run_id = str(run.id)
        self.metrics.runs_created.inc()
        self.metrics.dispatch_latency.observe(
            max(0.0, (utcnow() - delivery.received_at).total_seconds())
        )
        try:
            emit_event(
                event=EVENT_NAME,
                resource={
                    "prefect.resource.id": f"agency.webhook.delivery.{delivery.id}",
                    "prefect.resource.name": f"{delivery.workflow}/{delivery.client}",
                },
                related=[
                    {
                        "prefect.resource.id": f"agency.client.{delivery.client}",
                        "prefect.resource.role": "client",
                    },
                    {
                        "prefect.resource.id": f"agency.workflow.{delivery.workflow}",
                        "prefect.resource.role": "workflow",
                    },
                    {
                        "prefect.resource.id": f"prefect.flow-run.{run_id}",
                        "prefect.resource.role": "flow-run",
                    },
                ],
                payload={"delivery_id": delivery.id, "flow_run_id": run_id},
            )
        except Exception:  # noqa: BLE001 - the run exists; a lost feed event must not undo it
            logger.warning("could not emit %s for delivery %s", EVENT_NAME, delivery.id)
        return Outcome(delivery, flow_run_id=run_id)

    async def run_once(self, api: PrefectClient) -> int:
        """Claim one batch and dispatch it; return how many deliveries were claimed."""
        claimed = await anyio.to_thread.run_sync(self._claim)
        if not claimed:
            return 0
        limit = asyncio.Semaphore(self.concurrency)

        async def one(delivery: Claimed) -> Outcome:
            async with limit:
                return await self._dispatch(api, delivery)

        outcomes = await asyncio.gather(*(one(d) for d in claimed))
        await anyio.to_thread.run_sync(self._record, list(outcomes))
        return len(claimed)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Dispatch until ``stop`` is set; survives database and Prefect outages."""
        stop = stop or asyncio.Event()
        async with get_client() as api:
            while not stop.is_set():
                try:
                    busy = await self.run_once(api)
                except Exception:  # noqa: BLE001 - e.g. the DB is briefly unreachable
                    logger.exception("dispatch cycle failed; retrying")
                    busy = 0
                    await asyncio.sleep(1.0)
                if busy:
                    continue
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass


def run_dispatcher(
    database_url: str, *, concurrency: int = 10, lease_seconds: float = 60.0
) -> None:
    """Run one dispatcher in the foreground until SIGINT/SIGTERM (``agency dispatcher``).

    A signal cancels in-flight calls at once: safe, because an unrecorded run is found again by
    its idempotency key when the delivery's lease runs out.
    """
    import signal

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        dispatcher = Dispatcher(database_url, concurrency=concurrency, lease_seconds=lease_seconds)
        try:
            await dispatcher.run()
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
