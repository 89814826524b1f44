"""Per-client egress allowances: loopback services one client (the demo) may reach.

The node running a task declares whose run it is with :func:`client_scope`; the egress policy
then also lets through the ``host:port`` pairs written for exactly that client in
``<home>/egress-clients.json`` (``{"<client>": ["127.0.0.1:2525", ...]}``), by the name as typed
in the client's settings or credentials. Every other client, and code outside a scope, gets the
plain policy. ``agency demo`` writes the file for the demo client; ``agency demo --reset``
removes its entry.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path

FILE_NAME = "egress-clients.json"

_current_client: ContextVar[str | None] = ContextVar("agency_egress_client", default=None)
_cache: dict[Path, tuple[int, dict[str, frozenset[tuple[str, int]]]]] = {}


@contextlib.contextmanager
def client_scope(client: str) -> Iterator[None]:
    """Connections made inside the block are made for ``client``."""
    token = _current_client.set(client)
    try:
        yield
    finally:
        _current_client.reset(token)


def current_client() -> str | None:
    """The client of the innermost :func:`client_scope`, if any."""
    return _current_client.get()


def _parse(entries: object) -> frozenset[tuple[str, int]]:
    pairs: set[tuple[str, int]] = set()
    for entry in entries if isinstance(entries, list) else []:
        host, _, port = str(entry).rpartition(":")
        if host and port.isdigit():
            pairs.add((host.strip("[]").lower(), int(port)))
    return frozenset(pairs)


def client_allowances(home: Path) -> Mapping[str, frozenset[tuple[str, int]]]:
    """The ``{client: {(host, port)}}`` file under ``home`` (re-read when it changes)."""
    path = home / FILE_NAME
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {}
    cached = _cache.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        raw = {}
    parsed = {str(k): _parse(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    _cache[path] = (mtime, parsed)
    return parsed


def write_client_allowance(home: Path, client: str, endpoints: list[str] | None) -> None:
    """Set (or with ``None`` remove) ``client``'s allowed ``host:port`` list in the file."""
    path = home / FILE_NAME
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        raw = {}
    if endpoints is None:
        raw.pop(client, None)
    else:
        raw[client] = list(endpoints)
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw, indent=2))
    os.replace(tmp, path)
