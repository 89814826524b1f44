"""The ASGI gateway: the platform's only public door (the Prefect API stays private).

:func:`create_app` builds it from the routes of :mod:`gateway.routes` (webhooks, health,
metrics) and :mod:`gateway.client_api` (``/api/v1``); what each answer means is in
:mod:`gateway.intake`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from agency.db import session_scope
from agency.settings import Settings
from deployments.webhooks.metrics import Metrics
from deployments.webhooks.outbox import pending_count
from gateway import client_api, oauth, routes
from gateway.intake import Gateway, event_model


def create_app(
    settings: Settings, *, run_dispatcher: bool = True, dispatcher_concurrency: int = 10
) -> FastAPI:
    """The gateway app; with ``run_dispatcher`` it also dispatches the outbox in-process."""
    metrics = Metrics()
    gateway = Gateway(settings, metrics)

    def _pending() -> int:
        try:
            with session_scope(gateway.url) as session:
                return pending_count(session)
        except SQLAlchemyError:
            return -1

    metrics.track_pending(_pending)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_enable_sqlite_wal, gateway.url)
        # Import what requests use (the workflow catalog imports every flow and node), then
        # keep it all out of the cyclic collector: its full passes over these objects stalled
        # every request in flight for ~60 ms, once per ~2,000 requests.
        await anyio.to_thread.run_sync(_warm_up)
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        gateway.loop = asyncio.get_running_loop()
        task = None
        if run_dispatcher:
            from deployments.dispatcher import Dispatcher

            gateway.dispatcher = Dispatcher(
                gateway.url, metrics=metrics, concurrency=dispatcher_concurrency
            )
            task = asyncio.create_task(gateway.dispatcher.run(stop))
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                try:
                    await asyncio.wait_for(task, timeout=5)
                except TimeoutError:
                    pass  # cancelled mid-call: the idempotency key covers the retry

    app = FastAPI(
        title="Agency gateway",
        version="1.0.0",
        description="Webhooks and the client API of the agency platform.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.include_router(client_api.router)
    client_api.install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(oauth.router)
    return app


def _enable_sqlite_wal(url: str) -> None:
    # concurrent readers while one request writes; the setting persists in the database file
    if url.startswith("sqlite"):
        with session_scope(url) as session:
            session.execute(text("PRAGMA journal_mode=WAL"))


def _warm_up() -> None:
    from flows.catalog import all_workflows

    for slug in all_workflows():
        event_model(slug)
