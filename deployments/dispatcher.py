"""The outbox dispatcher: turns each accepted delivery into exactly one Prefect flow run.

For each due delivery it calls ``POST /api/deployments/<id>/create_flow_run`` with
``idempotency_key=<delivery id>`` and ``parameters={"event": <payload>}`` (Prefect merges the
deployment's own ``client`` and ``settings``), records the run id, and emits the Prefect event
``agency.webhook.received``. Because Prefect answers a repeated idempotency key with the first
run, a dispatcher killed between creating a run and recording it creates no second run when the
delivery's lease runs out and it is tried again. When Prefect is unreachable or answers 5xx, the
delivery stays pending and is retried with exponential backoff; nothing is dropped.

Deliveries of a batch activation (or of an adaptive one that fell behind, see
``deployments.webhooks.adaptive``) are first grouped into batches (``deployments.webhooks.batches``)
and each batch becomes one run with ``events=[...]``, the batch id as idempotency key and the tag
``batch:<id>``. Every ``settle_seconds`` the dispatcher also fails, with the reason, the events
of batch runs that ended without recording their outcomes (``deployments.settlement``).

Run it in the gateway process (``agency gateway``) or alone (``agency dispatcher``); several may
run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from agency.db import session_scope, utcnow
from agency.db.outcomes import BATCH_TAG_PREFIX
from deployments.settlement import settle_ended_batches
from deployments.webhooks.adaptive import decide
from deployments.webhooks.batches import (
    BatchConflict,
    ClaimedBatch,
    claim_due_batches,
    form_batches,
    mark_batch_dispatched,
    mark_batch_failed,
    mark_batch_retry,
)
from deployments.webhooks.metrics import Metrics
from deployments.webhooks.outbox import Claimed, claim_due, mark_dispatched, mark_failed, mark_retry

logger = logging.getLogger("agency.dispatcher")

EVENT_NAME = "agency.webhook.received"
#: on every run the dispatcher creates: the portal shows "webhook" as the run's trigger
WEBHOOK_TAG = "trigger:webhook"


@dataclass(frozen=True)
class Job:
    """One flow run to create: for a single delivery or for a batch of them."""

    key: str  # the delivery or batch id: Prefect's idempotency key
    batch: bool
    client: str
    workflow: str
    deployment_id: str | None
    parameters: dict[str, Any]
    attempts: int
    received_at: datetime
    tags: list[str] = field(default_factory=list)

    @classmethod
    def of_delivery(cls, d: Claimed) -> Job:
        return cls(
            d.id,
            False,
            d.client,
            d.workflow,
            d.deployment_id,
            {"event": d.payload},
            d.attempts,
            d.received_at,
        )

    @classmethod
    def of_batch(cls, b: ClaimedBatch) -> Job:
        return cls(
            b.id,
            True,
            b.client,
            b.workflow,
            b.deployment_id,
            {"events": b.payloads},
            b.attempts,
            b.first_received_at,
            [f"{BATCH_TAG_PREFIX}{b.id}"],
        )


@dataclass
class Outcome:
    """What happened to one claimed job."""

    job: Job
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
        settle_seconds: float | None = 30.0,
        settle_grace_seconds: float = 30.0,
    ) -> None:
        self.database_url = database_url
        self.metrics = metrics or Metrics()
        # small batches keep a claim well inside its lease on a slow Prefect server
        self.batch_size = batch_size or 5 * concurrency
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.settle_seconds = settle_seconds
        self.settle_grace_seconds = settle_grace_seconds
        self.wakeup = asyncio.Event()

    def backoff(self, attempts: int) -> float:
        """Seconds before try ``attempts + 1``: 0.5 s doubling, capped, with jitter."""
        base = min(self.max_backoff_seconds, 0.5 * 2 ** min(attempts, 16))
        return base * random.uniform(0.75, 1.25)

    def _form(self) -> None:
        try:
            with session_scope(self.database_url) as session:
                decide(session)
                form_batches(session)
        except BatchConflict:
            logger.debug("another dispatcher grouped the same deliveries; trying again")

    def _claim(self) -> list[Job]:
        self._form()
        with session_scope(self.database_url) as session:
            batches = claim_due_batches(session, self.concurrency, self.lease_seconds)
            deliveries = claim_due(session, self.batch_size, self.lease_seconds)
        return [Job.of_batch(b) for b in batches] + [Job.of_delivery(d) for d in deliveries]

    def _record(self, outcomes: list[Outcome]) -> None:
        with session_scope(self.database_url) as session:
            for o in outcomes:
                attempts, key, error = o.job.attempts + 1, o.job.key, o.error or ""
                if o.flow_run_id is not None:
                    done = mark_batch_dispatched if o.job.batch else mark_dispatched
                    done(session, key, o.flow_run_id)
                elif o.retry_after is not None:
                    retry = mark_batch_retry if o.job.batch else mark_retry
                    retry(session, key, attempts, o.retry_after, error)
                else:
                    fail = mark_batch_failed if o.job.batch else mark_failed
                    fail(session, key, attempts, error)

    async def settle(self, api: PrefectClient) -> int:
        """Fail the unrecorded events of batch runs that ended (see ``deployments.settlement``);
        return how many."""
        failed = await settle_ended_batches(api, self.database_url, self.settle_grace_seconds)
        if failed:
            logger.info("%d events of ended batch runs had no outcome: failed", failed)
        return failed

    async def _settle_every(self, api: PrefectClient, seconds: float) -> None:
        while True:
            try:
                await self.settle(api)
            except Exception:  # noqa: BLE001 - the DB or Prefect is briefly unreachable
                logger.warning("could not settle ended batch runs; trying again", exc_info=True)
            await asyncio.sleep(seconds)

    async def _dispatch(self, api: PrefectClient, job: Job) -> Outcome:
        if job.deployment_id is None:
            return Outcome(job, error="The activation has no deployment (deactivated).")
        try:
            run = await api.create_flow_run_from_deployment(
                UUID(job.deployment_id),
                parameters=job.parameters,
                idempotency_key=job.key,
                tags=[WEBHOOK_TAG, *job.tags],
            )
        except ObjectNotFound:
            return Outcome(job, error="The activation's deployment no longer exists.")
        except PrefectHTTPStatusError as exc:
            status = exc.response.status_code
            if status >= 500 or status in (408, 429):
                self.metrics.dispatch_errors.inc()
                return Outcome(job, retry_after=self.backoff(job.attempts), error=str(exc))
            return Outcome(job, error=f"Prefect refused the run: HTTP {status}.")
        except (httpx.HTTPError, OSError, RuntimeError) as exc:
            self.metrics.dispatch_errors.inc()
            return Outcome(
                job,
                retry_after=self.backoff(job.attempts),
                error=f"Prefect unreachable: {exc.__class__.__name__}",
            )
        run_id = str(run.id)
        self.metrics.runs_created.inc()
        events = len(job.parameters["events"]) if job.batch else 1
        self.metrics.events_dispatched.labels("batch" if job.batch else "single").inc(events)
        self.metrics.dispatch_latency.observe(
            max(0.0, (utcnow() - job.received_at).total_seconds())
        )
        kind = "batch" if job.batch else "delivery"
        try:
            emit_event(
                event=EVENT_NAME,
                resource={
                    "prefect.resource.id": f"agency.webhook.{kind}.{job.key}",
                    "prefect.resource.name": f"{job.workflow}/{job.client}",
                },
                related=[
                    {
                        "prefect.resource.id": f"agency.client.{job.client}",
                        "prefect.resource.role": "client",
                    },
                    {
                        "prefect.resource.id": f"agency.workflow.{job.workflow}",
                        "prefect.resource.role": "workflow",
                    },
                    {
                        "prefect.resource.id": f"prefect.flow-run.{run_id}",
                        "prefect.resource.role": "flow-run",
                    },
                ],
                payload={f"{kind}_id": job.key, "flow_run_id": run_id},
            )
        except Exception:  # noqa: BLE001 - the run exists; a lost feed event must not undo it
            logger.warning("could not emit %s for %s %s", EVENT_NAME, kind, job.key)
        return Outcome(job, flow_run_id=run_id)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Dispatch until ``stop`` is set; survives database and Prefect outages.

        A pipeline, so Prefect always has ``concurrency`` creations in flight while a backlog
        lasts: ``concurrency`` tasks take jobs from a queue that is topped up with the next
        claim whenever it holds fewer than ``concurrency`` jobs, and finished outcomes are
        recorded in batches. Claimed jobs wait seconds, well inside their lease.
        """
        stop = stop or asyncio.Event()
        jobs: asyncio.Queue[Job] = asyncio.Queue()
        done: list[Outcome] = []
        progress = asyncio.Event()

        async with get_client() as api:

            async def work() -> None:
                while True:
                    job = await jobs.get()
                    try:
                        done.append(await self._dispatch(api, job))
                    finally:
                        progress.set()

            # the dispatching workers and, if on, the settlement loop: cancelled together
            background = [asyncio.create_task(work()) for _ in range(self.concurrency)]
            if self.settle_seconds is not None:
                settling = self._settle_every(api, self.settle_seconds)
                background.append(asyncio.create_task(settling))
            more, look = False, True  # the last claim was full / time to look for new work
            try:
                while not stop.is_set():
                    try:
                        # under a backlog, record every ``concurrency`` outcomes; else at once
                        if done and (len(done) >= self.concurrency or jobs.empty()):
                            outcomes, done[:] = list(done), []
                            try:
                                await anyio.to_thread.run_sync(self._record, outcomes)
                            except BaseException:
                                done.extend(outcomes)  # recorded next time
                                raise
                        if jobs.qsize() < self.concurrency and (more or look):
                            claimed = await anyio.to_thread.run_sync(self._claim)
                            more = len(claimed) >= self.batch_size
                            for job in claimed:
                                jobs.put_nowait(job)
                    except Exception:  # noqa: BLE001 - e.g. the DB is briefly unreachable
                        logger.exception("dispatch cycle failed; retrying")
                        await asyncio.sleep(1.0)
                    look = await self._wait(progress, stop)
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                if done:  # runs created but not yet recorded; else their lease runs out
                    with contextlib.suppress(Exception):
                        await anyio.to_thread.run_sync(self._record, list(done))

    async def _wait(self, progress: asyncio.Event, stop: asyncio.Event) -> bool:
        """Wait for a finished job, a wake-up or the poll interval; True unless only progress."""
        events = (progress, self.wakeup, stop)
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(
                waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        look = self.wakeup.is_set() or not progress.is_set()
        progress.clear()
        self.wakeup.clear()
        return look


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
