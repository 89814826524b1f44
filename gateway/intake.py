"""Admission of one event: the gateway's shared state, caches, body limits, parsing and the outbox.

``POST /hooks/<client>/<workflow>`` answers, in this order of checks:

| status | error code              | when                                                       |
|--------|-------------------------|------------------------------------------------------------|
| 404    | `not_found`             | unknown client or workflow (one answer for both)           |
| 403    | `client_suspended`      | the client is suspended by its agency                      |
| 409    | `inactive`              | activation paused/deactivated, or its webhook disabled     |
| 413    | `payload_too_large`     | body over 1 MiB (checked while reading)                    |
| 400    | `body_incomplete`       | the sender disconnected mid-body (logged as one line)      |
| 401    | `signature_invalid`     | missing or wrong signature / token                         |
| 401    | `timestamp_out_of_range`| signed timestamp more than 5 minutes off                   |
| 415    | `not_json`              | content type or body is not JSON                           |
| 422    | `payload_invalid`       | not an object, NaN / Infinity / a number too large, or     |
|        |                         | fails the workflow's model                                 |
| 400    | `delivery_id_too_long`  | the sender's delivery id is over 255 characters            |
| 200    | —                       | repeat of a sender delivery id within 24 h (first id back) |
| 429    | `rate_limited`          | over the activation's hourly budget (`Retry-After` set)    |
| 202    | —                       | persisted to the outbox: `{"delivery_id": ...}`            |

No rejection writes a delivery row or starts a run. Also ``GET /healthz``, ``GET /readyz``
(platform DB and Prefect reachable) and ``GET /metrics`` (Prometheus), plus the client API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from agency.db import session_scope
from agency.settings import Settings
from deployments.webhooks.metrics import Metrics
from deployments.webhooks.outbox import (
    GroupCommitter,
    RateLimited,
    Submission,
    Target,
    find_target,
)
from deployments.webhooks.secrets import valid_secrets
from deployments.webhooks.verifiers import VerificationFailed, delivery_key, verify

if TYPE_CHECKING:
    from deployments.dispatcher import Dispatcher


if TYPE_CHECKING:
    from deployments.dispatcher import Dispatcher

logger = logging.getLogger("agency.gateway")

_T = TypeVar("_T")

MAX_BODY_BYTES = 1024 * 1024
MAX_DELIVERY_ID = 255  # the outbox's dedupe_key column
TARGET_TTL = 1.0
SECRET_TTL = 30.0
SECRET_REFRESH_MIN = 0.2


class Rejected(Exception):
    """A 4xx answer with a JSON error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


@dataclass
class _Cached:
    value: Any
    at: float = field(default_factory=time.monotonic)


class Gateway:
    """State shared by the routes: settings, caches, outbox committer, metrics, dispatcher."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.url = settings.platform_database_url
        self.metrics = metrics
        self.committer = GroupCommitter(self.url)
        self.dispatcher: Dispatcher | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._targets: dict[tuple[str, str], _Cached] = {}
        self._loading: dict[tuple[object, ...], asyncio.Future[Any]] = {}
        self._secrets: dict[tuple[str, str], _Cached] = {}
        self._refreshed: dict[tuple[str, str], float] = {}  # last re-read after a failure

    def notify(self) -> None:
        """Wake the in-process dispatcher (callable from worker threads)."""
        if self.dispatcher is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.dispatcher.wakeup.set)

    def target(self, client: str, workflow: str) -> Target | None:
        key = (client, workflow)
        cached = self._targets.get(key)
        if cached is None or time.monotonic() - cached.at > TARGET_TTL:
            with session_scope(self.url) as session:
                cached = _Cached(find_target(session, client, workflow))
            self._targets[key] = cached
        return cached.value  # type: ignore[no-any-return]

    async def _shared(self, key: tuple[object, ...], load: Callable[[], _T]) -> _T:
        """``load()`` in a worker thread, one at a time per ``key``: when a cache entry is
        missing or expired under load, the requests that find it so share one read instead of
        each sending their own (a burst on a cold gateway would otherwise send one per request
        in flight, and wait for all of them)."""
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(anyio.to_thread.run_sync(load))
            self._loading[key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)  # type: ignore[no-any-return]

    async def fresh_target(self, client: str, workflow: str) -> Target | None:
        """:meth:`target`, one lookup at a time per URL."""
        key = ("target", client, workflow)
        return await self._shared(key, lambda: self.target(client, workflow))

    async def fresh_secrets(
        self, client: str, workflow: str, *, refresh: bool = False
    ) -> list[str]:
        """:meth:`secrets`, one read of the store at a time per URL."""
        return await self._shared(
            ("secrets", client, workflow, refresh),
            lambda: self.secrets(client, workflow, refresh=refresh),
        )

    def cached_target(self, client: str, workflow: str) -> tuple[bool, Target | None]:
        """``(True, target)`` from a fresh cache entry, else ``(False, None)`` (no I/O)."""
        cached = self._targets.get((client, workflow))
        if cached is None or time.monotonic() - cached.at > TARGET_TTL:
            return False, None
        return True, cached.value

    def cached_secrets(self, client: str, workflow: str) -> list[str] | None:
        """Fresh cached secrets, or ``None`` (no I/O)."""
        cached = self._secrets.get((client, workflow))
        if cached is None or time.monotonic() - cached.at > SECRET_TTL:
            return None
        return cached.value  # type: ignore[no-any-return]

    def secrets(self, client: str, workflow: str, *, refresh: bool = False) -> list[str]:
        """Secrets from the store, cached so a store or Prefect outage does not stop intake."""
        key = (client, workflow)
        cached = self._secrets.get(key)
        now = time.monotonic()
        age = None if cached is None else now - cached.at
        # a failed signature may mean a rotation: re-read at once, but at most every
        # SECRET_REFRESH_MIN per URL, so a flood of bad signatures cannot hammer the store
        retry = refresh and now - self._refreshed.get(key, -SECRET_TTL) > SECRET_REFRESH_MIN
        if age is not None and not (age > SECRET_TTL or retry):
            return cached.value  # type: ignore[union-attr, no-any-return]
        if refresh:
            self._refreshed[key] = now
        try:
            value = valid_secrets(self.settings, client, workflow)
        except Exception:
            if cached is not None:
                return cached.value  # type: ignore[no-any-return]
            raise
        self._secrets[key] = _Cached(value)
        return value


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The JSON error body every rejection answers with."""
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, "payload_too_large", "The body is over 1 MiB.")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected(413, "payload_too_large", "The body is over 1 MiB.")
            chunks.append(chunk)
    except ClientDisconnect:
        # the sender went away mid-body: nothing to answer, nothing persisted, one log line
        logger.warning(
            "%s %s: the sender disconnected after %d bytes", request.method, request.url.path, size
        )
        raise Rejected(400, "body_incomplete", "The body was cut off.") from None
    return b"".join(chunks)


class _NotStandardJson(Exception):
    """A number JSON does not have: NaN, Infinity, or one too large for a double."""


def _no_constant(name: str) -> float:
    raise _NotStandardJson(f"{name} is not a JSON number.")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStandardJson(f"The number {text[:40]} is too large.")
    return value


def parse_event(content_type: str | None, body: bytes, model: type[BaseModel] | None) -> dict:
    """The JSON object in ``body``; 415 when it is not JSON, 422 when not a valid object."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise Rejected(415, "not_json", "Send the event as application/json.")
    try:
        payload = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except _NotStandardJson as exc:
        raise Rejected(422, "payload_invalid", str(exc)) from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected(415, "not_json", "The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise Rejected(422, "payload_invalid", "The event must be a JSON object.")
    if model is not None:
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                for e in exc.errors(include_input=False)
            )
            raise Rejected(422, "payload_invalid", f"Invalid event: {problems}.") from None
    return payload


_MODELS: dict[str, _Cached] = {}


def event_model(workflow: str) -> type[BaseModel] | None:
    """The workflow's declared input model (manifest attribute ``event_model``), if any.

    Cached for ``SECRET_TTL``: finding a workflow scans the plugin directories, which cost more
    than the rest of a webhook request."""
    cached = _MODELS.get(workflow)
    if cached is None or time.monotonic() - cached.at > SECRET_TTL:
        from agency.errors import NotFound
        from flows.catalog import get_workflow

        try:
            cached = _Cached(get_workflow(workflow).event_model)
        except NotFound:
            cached = _Cached(None)
        _MODELS[workflow] = cached
    return cached.value  # type: ignore[no-any-return]


async def accept(gateway: Gateway, target: Target, request: Request) -> Response:
    """Read, verify and parse one webhook request, then :func:`admit` it."""
    assert target.verifier is not None
    body = await read_body(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        try:
            secrets = gateway.cached_secrets(
                target.client, target.workflow
            ) or await gateway.fresh_secrets(target.client, target.workflow)
        except Exception:  # noqa: BLE001 - store unreachable and nothing cached yet
            logger.exception(
                "cannot read the webhook secret of %s/%s", target.client, target.workflow
            )
            raise Rejected(503, "unavailable", "Try again shortly.", {"Retry-After": "5"}) from None
        try:
            verify(target.verifier, secrets, headers, body)
        except VerificationFailed:
            secrets = await gateway.fresh_secrets(target.client, target.workflow, refresh=True)
            verify(target.verifier, secrets, headers, body)
    except VerificationFailed as exc:
        raise Rejected(401, exc.code, exc.message) from None
    payload = parse_event(request.headers.get("content-type"), body, event_model(target.workflow))
    dedupe = delivery_key(target.verifier, headers, payload)
    return await admit(gateway, target, payload, dedupe, "webhook")


async def admit(
    gateway: Gateway, target: Target, payload: dict[str, Any], dedupe: str | None, source: str
) -> Response:
    """Dedupe, rate-limit and persist one event: 400 (delivery id too long), 200 (duplicate),
    429 or 202.

    The budget is the activation's deliveries of the last hour in the platform DB, checked in
    the transaction that writes the row, so every gateway replica shares it.
    """
    if dedupe is not None and len(dedupe) > MAX_DELIVERY_ID:
        raise Rejected(
            400,
            "delivery_id_too_long",
            f"The delivery id is over {MAX_DELIVERY_ID} characters.",
        )
    limit = target.rate_limit_per_hour or gateway.settings.webhook_rate_limit_per_hour
    result = await asyncio.wrap_future(
        gateway.committer.submit(Submission(target, payload, dedupe, source, limit))
    )
    if isinstance(result, RateLimited):
        raise Rejected(
            429,
            "rate_limited",
            f"Over the budget of {result.limit} runs per hour.",
            {"Retry-After": str(result.retry_after)},
        )
    if not result.created:
        return JSONResponse({"delivery_id": result.delivery_id, "duplicate": True}, status_code=200)
    gateway.notify()
    return JSONResponse({"delivery_id": result.delivery_id}, status_code=202)
