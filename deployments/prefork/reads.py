"""Reads of the Prefect API that a prefork worker shares with its runs' children.

Per deployed run, Prefect's worker reads the deployment twice and the flow once, and the
engine in the child reads the flow run, the deployment twice, the flow, the work pool, the work
queue and the server's default result storage twice: records that the worker read a moment
before (or could have). The worker keeps its answers to those ``GET`` requests for
:data:`READ_SECONDS` (:class:`ReadCache`) and hands each child the ones its run needs, with the
flow run itself (:func:`answer_from`). The child's clients answer those requests from that
snapshot instead of the server; every other request, and every write, goes to the server as
usual. A child lives for one run, so its snapshot is at most a few seconds old; the flow run is
answered once, for the engine's first read, and read from the server after that.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

__all__ = ["READ_SECONDS", "ReadCache", "Snapshot", "answer_from", "answered"]

#: How long the worker reuses a read (a deployment change reaches runs at most this late).
READ_SECONDS = 5.0

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: API paths, relative to the API URL, of the records the worker may reuse and share.
SHAREABLE = re.compile(
    rf"^/(deployments/{_UUID}|flows/{_UUID}|work_queues/{_UUID}|work_pools/[^/?]+|admin/storage)$"
)

#: What a child's snapshot holds: the API URL, reads by path, and paths answered only once.
Snapshot = dict[str, Any]

_answered: list[str] = []  # paths this process answered from its snapshot


def _relative(api: str, url: httpx.URL) -> str | None:
    text = str(url)
    return text[len(api) :] if text.startswith(api) else None


def _answer(request: httpx.Request, body: str | bytes) -> httpx.Response:
    return httpx.Response(
        200, content=body, headers={"content-type": "application/json"}, request=request
    )


class ReadCache:
    """The worker's recent answers to shareable ``GET`` requests of its client."""

    def __init__(self, seconds: float = READ_SECONDS) -> None:
        self.seconds = seconds
        self.api = ""
        self._bodies: dict[str, tuple[float, bytes]] = {}

    def install(self, http: httpx.AsyncClient) -> None:
        """Have ``http`` (the worker client's connection) answer shareable reads from here."""
        self.api = str(http.base_url).rstrip("/")
        send: Callable[..., Awaitable[httpx.Response]] = http.send

        async def send_or_reuse(
            request: httpx.Request, *args: Any, **kwargs: Any
        ) -> httpx.Response:
            path = _relative(self.api, request.url) if request.method == "GET" else None
            if path is None or not SHAREABLE.match(path):
                return await send(request, *args, **kwargs)
            body = self._fresh(path)
            if body is not None:
                return _answer(request, body)
            response = await send(request, *args, **kwargs)
            if response.status_code == 200:
                self._keep(path, response.content)
            return response

        http.send = send_or_reuse  # type: ignore[method-assign]

    def _fresh(self, path: str) -> bytes | None:
        entry = self._bodies.get(path)
        return entry[1] if entry and time.monotonic() - entry[0] < self.seconds else None

    def _keep(self, path: str, body: bytes) -> None:
        now = time.monotonic()
        if len(self._bodies) > 256:  # drop what expired, so the cache stays small
            self._bodies = {p: e for p, e in self._bodies.items() if now - e[0] < self.seconds}
        self._bodies[path] = (now, body)

    def snapshot(self, paths: list[str], once: dict[str, str]) -> Snapshot:
        """The fresh reads among ``paths``, and ``once`` (path: body) to answer a single time."""
        reads = {p: body.decode() for p in paths if (body := self._fresh(p)) is not None}
        return {"api": self.api, "reads": reads, "once": once}


def answer_from(snapshot: Snapshot) -> None:
    """Make this process's Prefect clients answer the snapshot's reads (call in the child)."""
    from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

    api: str = snapshot.get("api") or ""
    reads: dict[str, str] = snapshot.get("reads") or {}
    once: dict[str, str] = dict(snapshot.get("once") or {})
    if not api or not (reads or once):
        return

    def answer(request: httpx.Request) -> httpx.Response | None:
        path = _relative(api, request.url) if request.method == "GET" else None
        body = None if path is None else (once.pop(path, None) or reads.get(path))
        if body is None:
            return None
        _answered.append(path or "")
        return _answer(request, body)

    async_send, sync_send = PrefectHttpxAsyncClient.send, PrefectHttpxSyncClient.send

    async def send_async(
        self: PrefectHttpxAsyncClient, request: httpx.Request, *args: Any, **kwargs: Any
    ) -> httpx.Response:
        return answer(request) or await async_send(self, request, *args, **kwargs)

    def send_sync(
        self: PrefectHttpxSyncClient, request: httpx.Request, *args: Any, **kwargs: Any
    ) -> httpx.Response:
        return answer(request) or sync_send(self, request, *args, **kwargs)

    PrefectHttpxAsyncClient.send = send_async  # type: ignore[method-assign]
    PrefectHttpxSyncClient.send = send_sync  # type: ignore[method-assign]


def answered() -> list[str]:
    """The API paths this process answered from its snapshot, in order."""
    return list(_answered)
