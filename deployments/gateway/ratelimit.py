"""Per-activation run budget (default 100 accepted runs per hour), sliding one-hour window.

Kept in the gateway process: one gateway per deployment is the supported shape, and a restart
forgets at most one window of counts.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

WINDOW_SECONDS = 3600.0


class RateLimiter:
    """``take(key, limit)`` returns 0 when allowed, else the seconds to wait (``Retry-After``)."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, limit: int, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= limit:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return 0

    def give_back(self, key: str) -> None:
        """Return the last taken unit (the request was a duplicate or failed to persist)."""
        with self._lock:
            hits = self._hits.get(key)
            if hits:
                hits.pop()
