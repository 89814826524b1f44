"""httpx transports that connect only to addresses the egress policy checked.

Each request (every redirect hop included, since httpx sends each hop through the transport)
has its host resolved and checked once by :meth:`EgressPolicy.check`; the connection then goes
to that address, while the host name stays in the ``Host`` header and is the TLS server name
(httpcore's ``sni_hostname`` extension), so certificates are verified against the name. There
is no second resolution that a changing DNS answer could slip through. Connections are pooled
per host name. Environment proxies are not used (a proxy would connect on our behalf).

Example::

    with guarded_client(timeout=10, follow_redirects=True) as http:
        http.get("https://api.example.com/items")
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import httpx

from agency.egress.policy import EgressPolicy, IPAddress, egress_policy

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _pinned(request: httpx.Request, address: IPAddress) -> httpx.Request:
    url = request.url
    extensions = dict(request.extensions)
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host
    # ``stream=`` keeps the original headers as they are, Host included
    return httpx.Request(
        request.method,
        url.copy_with(host=str(address)),
        headers=request.headers,
        stream=request.stream,
        extensions=extensions,
    )


def _port(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS.get(url.scheme, 80)


class GuardedTransport(httpx.BaseTransport):
    """A sync transport that checks and pins every request's address (see the module)."""

    def __init__(self, policy: EgressPolicy | None = None, **transport_options: Any) -> None:
        self._policy = policy
        self._options = transport_options
        self._pools: dict[str, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        policy = self._policy or egress_policy()
        address = policy.check(request.url.host, _port(request.url))[0]
        with self._lock:
            pool = self._pools.get(request.url.host)
            if pool is None:
                pool = self._pools[request.url.host] = httpx.HTTPTransport(**self._options)
        return pool.handle_request(_pinned(request, address))

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class AsyncGuardedTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`GuardedTransport` (resolution runs in a worker thread)."""

    def __init__(self, policy: EgressPolicy | None = None, **transport_options: Any) -> None:
        self._policy = policy
        self._options = transport_options
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        policy = self._policy or egress_policy()
        url = request.url
        addresses = await anyio.to_thread.run_sync(policy.check, url.host, _port(url))
        pool = self._pools.get(url.host)
        if pool is None:
            pool = self._pools[url.host] = httpx.AsyncHTTPTransport(**self._options)
        return await pool.handle_async_request(_pinned(request, addresses[0]))

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def guarded_client(
    policy: EgressPolicy | None = None, *, verify: Any = True, **client_options: Any
) -> httpx.Client:
    """An ``httpx.Client`` whose every connection passes the egress policy."""
    return httpx.Client(transport=GuardedTransport(policy, verify=verify), **client_options)


def async_guarded_client(
    policy: EgressPolicy | None = None, *, verify: Any = True, **client_options: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection passes the egress policy."""
    return httpx.AsyncClient(
        transport=AsyncGuardedTransport(policy, verify=verify), **client_options
    )
