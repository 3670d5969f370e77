"""What fetched documents said, kept until they expire, with one fetch in flight per URL.

``FetchCache.get(key, load)`` answers from the cache while the entry is fresh. Otherwise one
caller (the first) runs ``load`` while the callers that come meanwhile wait for its result
(Go's ``singleflight``): a hundred requests naming one new client make one fetch, not a hundred.
``load`` returns its result and how long to keep it; a result that says a fetch failed is kept
too (for as long as the loader says), so a client whose document is broken or unreachable
cannot make the gateway fetch again at every request. An exception out of ``load`` (the
database down, say) is kept by no one: the waiting callers try again, one of them loading.

Per process and bounded: past ``capacity`` entries, the oldest is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

#: how long a fetched answer is kept: its ``max-age`` within these bounds, else the default
MIN_KEEP = 60
MAX_KEEP = 24 * 3600
DEFAULT_KEEP = 3600
#: how long a failure is kept before the URL is fetched again
FAILURE_KEEP = 60


def keep_for(max_age: int | None) -> int:
    """Seconds to keep an answer that said ``max_age`` (a metadata document, a JWK Set)."""
    if max_age is None:
        return DEFAULT_KEEP
    return min(max(max_age, MIN_KEEP), MAX_KEEP)


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    waiting: int = 0


@dataclass(frozen=True)
class _Kept(Generic[T]):
    result: T
    expires_at: float


class FetchCache(Generic[T]):
    """``clock``: monotonic seconds (tests move it on instead of waiting)."""

    def __init__(self, capacity: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, _Kept[T]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    def get(self, key: str, load: Callable[[], tuple[T, float]]) -> T:
        """The fresh result for ``key``; else ``load()``'s, run by one caller at a time.

        ``load`` returns ``(result, seconds to keep it)``."""
        while True:
            with self._lock:
                kept = self._kept.get(key)
                if kept is not None and kept.expires_at > self.clock():
                    return kept.result
                flight = self._flights.get(key)
                leading = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
                else:
                    flight.waiting += 1
            if leading:
                return self._lead(key, load, flight)
            flight.done.wait()
            with self._lock:
                flight.waiting -= 1
            # the leader kept a result (read at the top of the loop), or failed without one:
            # then this caller tries, leading or waiting for whoever leads now

    def _lead(self, key: str, load: Callable[[], tuple[T, float]], flight: _Flight) -> T:
        try:
            result, keep_for = load()
            with self._lock:
                self._kept[key] = _Kept(result, self.clock() + keep_for)
                self._kept.move_to_end(key)
                while len(self._kept) > self.capacity:
                    self._kept.popitem(last=False)
            return result
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def forget(self, key: str, result: T) -> None:
        """Drop what is kept for ``key`` if it is still ``result``: a caller that found it
        wanting (an unknown ``kid``) makes the next ``get`` fetch, and a result another caller
        fetched meanwhile stays (so callers that all found one result wanting cost one fetch)."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept.result is result:
                del self._kept[key]

    def waiting(self, key: str) -> int:
        """How many callers wait for the fetch of ``key`` in flight (0 if there is none)."""
        with self._lock:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.waiting
