"""Failed-login throttling per key (a user name, a client address) over a sliding window.

In memory, per process: with N replicas an attacker gets at most N times the budget, which
still bounds online guessing; a shared store would buy little for its cost here.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class Throttle:
    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # the issuer's sync core runs in a threadpool

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in keys)

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now)
                self._failures.setdefault(key, deque()).append(now)

    def succeed(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
