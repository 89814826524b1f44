"""Run one existing flow run in a freshly forked child, through Prefect's own flow engine.

This mirrors ``python -m prefect.engine <flow-run-id>``: read the flow run, load its flow from
the deployment (pull steps included, so the working directory and the entrypoint file are the
deployment's), run it with ``run_flow`` under ``handle_engine_signals``. Differences, and why:
settings are re-read when the run's environment sets a PREFECT_ variable the template's lacks;
SIGUSR1 means "cancelled" (see ``CANCEL_SIGNAL``); the worker, not a watcher thread per run,
notices an outside suspension and says so with SIGUSR2 (:mod:`deployments.prefork.suspension`);
reads of records the worker already had are answered from its snapshot
(:mod:`deployments.prefork.reads`); the engine's heartbeat thread is off, and
the worker emits the run's ``prefect.flow-run.heartbeat`` events instead, at the same frequency
(:mod:`deployments.prefork.heartbeat`; a sync flow would wait up to ~1 s for that thread to
stop, and heartbeats from the worker stop when it dies, with its children); buffered logs and
events are shipped before ``os._exit``, since no ``atexit`` hook runs in a forked child.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import ssl
import sys
from typing import Any
from uuid import UUID

# imported here so the template preloads them: the engine and what it imports lazily per run
import anyio._backends._asyncio  # noqa: F401
import certifi
import prefect.flow_engine  # noqa: F401
import prefect.task_engine  # noqa: F401
import prefect.utilities.visualization  # noqa: F401
import rich._emoji_codes  # noqa: F401
from prefect._internal import control_listener
from prefect._internal.metrics import RunMetrics
from prefect.context import SettingsContext
from prefect.engine import _drive_run_flow_result, handle_engine_signals
from prefect.events.worker import EventsWorker
from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow
from prefect.logging.handlers import APILogWorker
from prefect.settings import Settings

from deployments.prefork.reads import Snapshot, answer_from
from deployments.prefork.suspension import watch_from_worker

__all__ = ["CANCEL_SIGNAL", "child_settings", "prepare_template", "run_child"]

#: Sent by the worker to a child whose run was cancelled in Prefect.
CANCEL_SIGNAL = signal.SIGUSR1


_create_default_context = ssl.create_default_context
_RENDERED: dict[str, str] = {}  # the template's settings as environment variables
_loaded_contexts: dict[str, ssl.SSLContext] = {}
_PREFECT_CLIENT = "prefect.client.orchestration"  # the module whose clients share a context


def _shared_default_context(
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
    *,
    cafile: str | None = None,
    capath: str | None = None,
    cadata: Any = None,
) -> ssl.SSLContext:
    # Every Prefect client builds ``ssl.create_default_context(cafile=<CA bundle>)``: 10-30 ms
    # of CPU parsing the bundle (the system's is larger than certifi's), and a run makes about
    # four clients. The template parses the bundles Prefect would use once; children (each
    # with its own copy of memory) reuse them, and remember any other bundle after its first
    # use. Only Prefect's client gets a shared context (it never changes one); every other
    # caller, which might load a client certificate into its context or relax its checks, gets
    # a new one as usual.
    if (
        purpose is not ssl.Purpose.SERVER_AUTH
        or not cafile
        or capath
        or cadata
        or sys._getframe(1).f_globals.get("__name__") != _PREFECT_CLIENT
    ):
        return _create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
    shared = _loaded_contexts.get(cafile)
    if shared is None:
        shared = _loaded_contexts[cafile] = _create_default_context(cafile=cafile)
    return shared


def prepare_template() -> None:
    """Work every child would repeat, done once in the template before it forks: the TLS
    contexts of the CA bundles Prefect's clients use, the settings rendered as environment
    variables (to tell a run's environment from the template's), and the startup objects moved
    out of the cyclic garbage collector (a collection in a child would otherwise touch, and so
    copy, the whole heap)."""
    settings = SettingsContext.get().settings
    for cafile in {certifi.where(), settings.api.ssl_cert_file or ""} - {""}:
        _loaded_contexts[cafile] = _create_default_context(cafile=cafile)
    ssl.create_default_context = _shared_default_context  # type: ignore[assignment]
    _RENDERED.update(settings.to_environment_variables(exclude_unset=True))
    gc.collect()
    gc.freeze()


def child_settings(reread: bool = True, *, csrf: bool = True) -> Settings:
    """Prefect settings for a run's child: read from the environment again if ``reread``
    (~50 ms), else the template's own; flow-run heartbeats off (the worker sends them), no
    server version handshake (the worker made it; Prefect's setting exists for exactly such
    worker subprocesses), and CSRF tokens off when ``csrf`` is False (the worker found the
    server does not use them). Each of those handshakes costs one request per client, and
    a run makes two clients."""
    settings = Settings() if reread else SettingsContext.get().settings
    flows = settings.flows.model_copy(update={"heartbeat_frequency": None})
    client = settings.client.model_copy(
        update={
            "server_version_check_enabled": False,
            "csrf_support_enabled": settings.client.csrf_support_enabled and csrf,
        }
    )
    return settings.model_copy(update={"flows": flows, "client": client})


def _changes_settings(env: dict[str, str]) -> bool:
    """Whether ``env`` sets a Prefect setting to a value the template's settings do not have.

    The worker renders its own settings into every run's environment (``1`` becomes ``1.0``,
    ``false`` becomes ``False``), so a value equal to the template's rendered one is no change.
    ``PREFECT__*`` variables (double underscore) carry run identity, not settings."""
    return any(
        key.startswith("PREFECT_")
        and not key.startswith("PREFECT__")
        and value not in (os.environ.get(key), _RENDERED.get(key))
        for key, value in env.items()
    )


def _cancel_requested(*_: object) -> None:
    # What Prefect's runner does over its control channel before its SIGTERM: with the "cancel"
    # intent set, the engine proposes Cancelled and runs on_cancellation hooks instead of
    # reporting a crash. Assigned directly: taking the module's lock in a signal handler could
    # deadlock against the main thread holding it.
    control_listener._intent = "cancel"
    os.kill(os.getpid(), signal.SIGTERM)


def _execute(flow_run_id: UUID) -> None:
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        try:
            flow = load_flow(flow_run)
        except Exception:
            run_logger.error(
                "Unexpected exception encountered when trying to load flow", exc_info=True
            )
            raise
        with RunMetrics(flow_run, flow):
            result: Any = run_flow(flow, flow_run=flow_run, error_logger=run_logger)
            _drive_run_flow_result(flow, result)


def run_child(
    flow_run_id: str,
    env: dict[str, str],
    cwd: str | None,
    *,
    csrf: bool = True,
    reads: Snapshot | None = None,
) -> int:
    """Run the flow run in this (forked) process; return the process exit code.

    ``csrf`` False: the server does not use CSRF tokens, so the clients need not fetch one.
    ``reads``: the worker's snapshot of records the engine reads (see ``answer_from``)."""
    random.seed()  # a fork copies the template's generator state into every child
    if reads:
        answer_from(reads)
    signal.signal(CANCEL_SIGNAL, _cancel_requested)
    watch_from_worker()
    reread = _changes_settings(env)
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    code = 0
    settings = child_settings(reread, csrf=csrf)
    try:
        with SettingsContext(profile=SettingsContext.get().profile, settings=settings):
            try:
                _execute(UUID(flow_run_id))
            finally:
                APILogWorker.drain_all(timeout=10)
                EventsWorker.drain_all(timeout=10)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code
