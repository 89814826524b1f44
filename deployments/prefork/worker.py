"""The ``agency-prefork`` worker: Prefect's worker loop, runs forked from a warm template.

``prefect worker start --type agency-prefork --pool POOL`` finds this class through the
``prefect.collections`` entry point of this project. Per flow run the worker asks the template
matching the run's ``preload`` list for a child (starting or replacing the template first when it
is missing, dead, or its project source changed), records the child's pid as the run's
infrastructure pid, and waits for the child's exit code; Prefect's ``BaseWorker`` proposes
Crashed for a non-zero code and enforces ``--limit``. While children run, one request per second
(``POST /flow_runs/filter``) finds those runs set to Cancelling or Suspended from outside
(:mod:`deployments.prefork.suspension`), and those newly Running while heartbeats are on. A
cancelled run's child gets SIGUSR1 (its engine then records Cancelled and runs
``on_cancellation`` hooks, as under Prefect's runner), and its process group SIGKILL after the
grace period; the worker sets Cancelled if the child could not. A running child's run gets
its ``prefect.flow-run.heartbeat`` events from the worker (:mod:`deployments.prefork.heartbeat`),
so they stop when the worker dies; its templates and children then die too (see
:mod:`deployments.prefork.template`), and :mod:`deployments.recovery` reschedules the runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import anyio.abc
import httpx
import prefect.types._datetime
from prefect._flow_run_suspension import is_suspended_flow_run_state
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState
from prefect.client.schemas.filters import FlowRunFilterStateType as StateTypeFilter
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import WorkerFlowRunResponse
from prefect.exceptions import InfrastructureNotFound
from prefect.workers.base import BaseWorker, BaseWorkerResult

from deployments.prefork.child import CANCEL_SIGNAL
from deployments.prefork.configuration import (
    DEFAULT_PRELOAD,
    PreforkJobConfiguration,
    PreforkVariables,
)
from deployments.prefork.forkserver import Template
from deployments.prefork.heartbeat import Heartbeats, heartbeat_seconds
from deployments.prefork.reads import ReadCache, Snapshot
from deployments.prefork.suspension import SUSPEND_SIGNAL

__all__ = ["PreforkWorker", "PreforkWorkerResult"]

POLL_SECONDS = 1.0
# warm templates kept at once (one per preload list and release in use); the least recently
# used one retires when another is needed
MAX_TEMPLATES = 4
POLL_LIMIT_MAX = 200  # Prefect's default page size: larger limits go through Prefect's poll
SUSPEND_RESIGNAL_SECONDS = 10.0


class PreforkWorkerResult(BaseWorkerResult):
    """Exit code and pid of one forked flow-run child."""


@dataclass
class _Child:
    pid: int
    template: Template
    grace: float
    cancelled: bool = False
    suspend_signalled: float = 0.0  # when the worker last told it its run was Suspended
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class PreforkWorker(BaseWorker[PreforkJobConfiguration, PreforkVariables, PreforkWorkerResult]):
    """Runs each flow run in its own process, forked from a template that imported Prefect."""

    type = "agency-prefork"
    job_configuration = PreforkJobConfiguration
    job_configuration_variables = PreforkVariables
    _description = (
        "Run each flow run in its own process, forked from a warm template that has already "
        "imported Prefect and the project's flows (agency platform)."
    )
    _display_name = "Agency prefork"
    _documentation_url = "https://docs.prefect.io/v3/deploy/infrastructure-concepts/workers"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (preload, release folder) -> template, least recently used first
        self._templates: OrderedDict[tuple[tuple[str, ...], str | None], Template] = OrderedDict()
        self._retired: list[Template] = []
        self._template_lock: asyncio.Lock | None = None
        self._children: dict[UUID, _Child] = {}
        self._heartbeats = Heartbeats()
        self._watching = False
        self._warming: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each is done
        self._refill: asyncio.Task[None] | None = None
        self._refill_wanted = False
        self._reads = ReadCache()

    async def setup(self) -> None:
        """Set up Prefect's worker, then start the pool's default template in the background, so
        the first run does not wait for Prefect and the project to be imported."""
        await super().setup()
        http = getattr(self._client, "_client", None)
        if isinstance(http, httpx.AsyncClient):
            self._reads.install(http)
        self._warming = self._background(self._warm())

    def _background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _warm(self) -> None:
        preload = list(DEFAULT_PRELOAD)
        if self._work_pool is not None:
            variables = self._work_pool.base_job_template.get("variables", {})
            preload = variables.get("properties", {}).get("preload", {}).get("default", preload)
        try:
            await self._template(tuple(preload))
        except Exception:  # the first run retries and reports the error against itself
            self._logger.warning("Could not start the prefork template", exc_info=True)

    async def _template(self, preload: tuple[str, ...], release: str | None = None) -> Template:
        """The warm template for ``preload`` and the run's release folder (``None``: the
        installed project); at most ``MAX_TEMPLATES`` stay warm, least recently used retire."""
        if self._template_lock is None:
            self._template_lock = asyncio.Lock()
        key = (preload, release)
        async with self._template_lock:
            template = self._templates.get(key)
            if template is not None and template.alive and not template.stale():
                self._templates.move_to_end(key)
                return template
            self._retired = [t for t in self._retired if not t.finished]
            if template is not None:
                self._logger.info("Replacing prefork template %s (code changed or died)", preload)
                template.retire()
                self._retired.append(template)
            template = Template(preload, release=release)
            await template.start()
            self._logger.info(
                "Prefork template %s%s ready (pid %s)",
                preload,
                f" of release {Path(release).name[:12]}" if release else "",
                template.pid,
            )
            self._templates[key] = template
            self._templates.move_to_end(key)
            while len(self._templates) > MAX_TEMPLATES:
                _, oldest = self._templates.popitem(last=False)
                oldest.retire()  # its running children finish; new runs get a fresh one
                self._retired.append(oldest)
            return template

    async def run(
        self,
        flow_run: FlowRun,
        configuration: PreforkJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> PreforkWorkerResult:
        """Fork the run's child from a warm template and wait for it to exit."""
        env = {k: v for k, v in configuration.env.items() if v is not None}
        heartbeat = heartbeat_seconds(env)  # a value Prefect rejects fails the run here
        template = await self._template(tuple(configuration.preload), env.get("PYTHONPATH"))
        cwd = str(configuration.working_dir) if configuration.working_dir else None
        reads = await self._shared_reads(flow_run)
        pid = await template.fork(
            str(flow_run.id), env, cwd, csrf=self._server_uses_csrf(), reads=reads
        )
        child = _Child(pid, template, configuration.termination_grace_seconds)
        self._children[flow_run.id] = child
        if heartbeat is not None:
            # until the child has exited, even past this call: a stopping worker (SIGTERM)
            # lets its children finish, and keeps sending their heartbeats meanwhile
            self._heartbeats.expect(flow_run.id, configuration.flow, heartbeat)
            template.exited(pid).add_done_callback(lambda _: self._heartbeats.stop(flow_run.id))
        if task_status is not None:
            task_status.started(pid)
        if not self._watching:
            self._watching = True
            self._background(self._watch_runs())
        try:
            code = await template.wait(pid)
        finally:
            child.exited.set()
            self._children.pop(flow_run.id, None)
        # a child we terminated for a cancellation is not a crash
        return PreforkWorkerResult(status_code=0 if child.cancelled else code, identifier=str(pid))

    async def _shared_reads(self, flow_run: FlowRun) -> Snapshot:
        """The records the run's engine will read, for its child to answer itself: the
        deployment and flow (just read by this worker), the work pool and queue, the server's
        default result storage (each read at most every ``READ_SECONDS`` here), and the flow run
        as this worker got it (answered to the engine's first read only)."""
        client = self.client
        reads: dict[str, Coroutine[Any, Any, object]] = {
            f"/flows/{flow_run.flow_id}": client.read_flow(flow_run.flow_id),
            "/admin/storage": client.read_server_default_result_storage(),
        }
        if flow_run.deployment_id:
            path = f"/deployments/{flow_run.deployment_id}"
            reads[path] = client.read_deployment(flow_run.deployment_id)
        if flow_run.work_queue_id:
            reads[f"/work_queues/{flow_run.work_queue_id}"] = client.read_work_queue(
                flow_run.work_queue_id
            )
        # a scheduled run as the worker gets it does not name its pool: it is this worker's
        pool = flow_run.work_pool_name or self._work_pool_name
        reads[str(httpx.URL(f"/work_pools/{pool}"))] = client.read_work_pool(pool)
        # a read that fails is left to the child, which makes it itself
        await asyncio.gather(*reads.values(), return_exceptions=True)
        once = {f"/flow_runs/{flow_run.id}": flow_run.model_dump_json()}
        return self._reads.snapshot(list(reads), once)

    def _release_limit_slot(self, flow_run_id: UUID) -> None:
        """Free the slot, then look for the next scheduled run at once instead of at the next
        poll (up to ``PREFECT_WORKER_QUERY_SECONDS`` later): a forked run takes well under a
        second, so waiting for the poll would leave slots idle most of the time."""
        super()._release_limit_slot(flow_run_id)
        self._refill_wanted = True
        if self._refill is None or self._refill.done():
            try:
                self._refill = self._background(self._submit_next())
            except RuntimeError:  # no running event loop: the regular poll covers it
                pass

    async def _get_scheduled_flow_runs(self) -> list[WorkerFlowRunResponse]:
        """Prefect's poll for scheduled runs, asking for no more than this worker can start now
        (its free slots, plus the runs it is submitting, which are still Scheduled). Prefect's
        asks for every scheduled run, up to 200 full records, and this worker polls after
        every run it finishes: with 100 runs waiting, a poll cost the server 29 ms of CPU, one
        for 4 runs 12 ms (and the worker parsed 100 records to start one). The request is
        Prefect's client's ``get_scheduled_flow_runs_for_work_pool`` plus ``limit``, which that
        method does not take."""
        if self._limiter is None:
            return await super()._get_scheduled_flow_runs()
        wanted = int(self._limiter.available_tokens) + len(self._submitting_flow_run_ids)
        if wanted > POLL_LIMIT_MAX:
            return await super()._get_scheduled_flow_runs()
        now = prefect.types._datetime.now("UTC")
        body: dict[str, Any] = {
            "scheduled_before": str(now + timedelta(seconds=int(self._prefetch_seconds))),
            "limit": wanted,
        }
        if self._work_queues:
            body["work_queue_names"] = list(self._work_queues)
        try:
            response = await self.client.request(
                "POST",
                "/work_pools/{name}/get_scheduled_flow_runs",
                path_params={"name": self._work_pool_name},
                json=body,
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:  # no such pool yet: as Prefect's poll
                return []
            if exc.response.status_code != 422:  # 422: a server whose page size is smaller
                raise
            return await super()._get_scheduled_flow_runs()
        return WorkerFlowRunResponse.model_validate_list(response.json())

    async def _submit_next(self) -> None:
        while self._refill_wanted:
            self._refill_wanted = False
            await asyncio.sleep(0)  # let the run's bookkeeping finish first
            try:
                await self.get_and_submit_flow_runs()
            except Exception:  # the regular poll tries again
                self._logger.debug("Could not look for the next flow run", exc_info=True)

    def _server_uses_csrf(self) -> bool:
        """False once this worker's client has learned the server has CSRF protection off
        (Prefect's client turns its support off on that answer); True when unsure."""
        http = getattr(self._client, "_client", None)
        return bool(getattr(http, "enable_csrf_support", True))

    async def _terminate(self, child: _Child) -> None:
        """Ask the child to cancel; SIGKILL its process group after the grace period."""
        try:
            os.kill(child.pid, CANCEL_SIGNAL)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(child.exited.wait(), child.grace)
        except TimeoutError:
            pass
        try:  # whatever the run started and left behind goes too
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await child.exited.wait()

    async def _cancel(self, run: FlowRun, child: _Child) -> None:
        child.cancelled = True
        self.get_flow_run_logger(run).info("Cancelling: terminating child %s", child.pid)
        await self._terminate(child)
        current = await self.client.read_flow_run(run.id)
        if current.state is None or current.state.type != StateType.CANCELLED:
            # the child died before its engine could record the cancellation
            await self._mark_flow_run_as_cancelled(
                current, state_updates={"message": "Flow run cancelled; its process was killed."}
            )

    async def _watch_runs(self) -> None:
        try:
            while self._children:
                await self._poll_runs()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self._watching = False

    async def _poll_runs(self) -> None:
        """Terminate the children of runs set Cancelling; tell those of runs Suspended from
        outside; start the heartbeats of runs that entered Running (asked for only while some
        run still waits for its first one)."""
        states = [StateType.CANCELLING, StateType.PAUSED]
        if self._heartbeats.waiting:
            states.append(StateType.RUNNING)
        try:
            runs = await self.client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=list(self._children)),
                    state=FlowRunFilterState(type=StateTypeFilter(any_=states)),
                )
            )
        except Exception:  # a blip must not stop the watcher; the next poll retries
            self._logger.warning("Could not poll the runs of this worker", exc_info=True)
            return
        for run in runs:
            child = self._children.get(run.id)
            if child is None or run.state is None:
                continue
            if run.state.type == StateType.RUNNING:
                self._heartbeats.start(run)
            elif run.state.type == StateType.PAUSED:
                # a Suspended run, not one that paused itself and waits in its process
                if is_suspended_flow_run_state(run.state):
                    self._tell_suspended(child)
            elif not child.cancelled:
                child.cancelled = True
                self._background(self._cancel(run, child))

    def _tell_suspended(self, child: _Child) -> None:
        """Signal the child of a Suspended run (again every ``SUSPEND_RESIGNAL_SECONDS`` while it
        runs on: a signal that came before its engine was watching is not lost)."""
        now = time.monotonic()
        if child.suspend_signalled and now - child.suspend_signalled < SUSPEND_RESIGNAL_SECONDS:
            return
        child.suspend_signalled = now
        try:
            os.kill(child.pid, SUSPEND_SIGNAL)
        except ProcessLookupError:
            pass

    async def kill_infrastructure(
        self,
        infrastructure_pid: str,
        configuration: PreforkJobConfiguration,
        grace_seconds: int = 30,
    ) -> None:
        """Terminate one of this worker's children by pid (SIGUSR1, then SIGKILL)."""
        pid = int(str(infrastructure_pid).rsplit(":", 1)[-1])
        for child in list(self._children.values()):
            if child.pid == pid:
                child.cancelled, child.grace = True, min(child.grace, grace_seconds)
                await self._terminate(child)
                return
        raise InfrastructureNotFound(f"no child with pid {pid} on this worker")

    async def teardown(self, *exc_info: Any) -> None:
        """Retire every template; each exits once its running children have ended (this
        process waits for that, sending their heartbeats), or kills them and exits if this
        process dies first: without it their runs get no heartbeats."""
        if self._warming is not None:
            self._warming.cancel()
        for template in [*self._templates.values(), *self._retired]:
            template.retire()
        self._templates.clear()
        await super().teardown(*exc_info)
