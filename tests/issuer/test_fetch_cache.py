"""What fetched documents said, kept until they expire, one fetch in flight per URL
(gateway/issuer/fetch_cache.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from gateway.issuer.fetch_cache import FetchCache, keep_for


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """A load that counts its calls and answers ``result`` kept for ``keep`` seconds."""

    def __init__(self, result: str = "document", keep: float = 60) -> None:
        self.calls = 0
        self.result = result
        self.keep = keep

    def __call__(self) -> tuple[str, float]:
        self.calls += 1
        return f"{self.result} {self.calls}", self.keep


def wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(500):
        if condition():
            return
        done.wait(0.01)
    pytest.fail("condition not met")


def test_kept_while_fresh_then_loaded_again() -> None:
    clock = Clock()
    cache: FetchCache[str] = FetchCache(clock=clock)
    load = Loader(keep=60)
    assert cache.get("u", load) == "document 1"
    clock.now += 59.9
    assert cache.get("u", load) == "document 1"
    clock.now += 0.1
    assert cache.get("u", load) == "document 2"
    assert load.calls == 2


def test_keys_are_kept_apart() -> None:
    cache: FetchCache[str] = FetchCache(clock=Clock())
    one, two = Loader("one"), Loader("two")
    assert cache.get("a", one) == "one 1"
    assert cache.get("b", two) == "two 1"
    assert cache.get("a", two) == "one 1"
    assert (one.calls, two.calls) == (1, 1)


def test_forget_drops_only_the_result_it_is_given() -> None:
    """A caller that found a result wanting forgets that result, never a newer one another
    caller fetched meanwhile: callers that all found one result wanting cost one fetch."""
    cache: FetchCache[str] = FetchCache(clock=Clock())
    load = Loader()
    first = cache.get("u", load)
    cache.forget("u", first)
    second = cache.get("u", load)
    assert second == "document 2"
    cache.forget("u", first)  # a late caller still holding the old result
    assert cache.get("u", load) == "document 2"
    cache.forget("nothing", first)
    assert load.calls == 2


def test_an_exception_is_kept_by_no_one() -> None:
    cache: FetchCache[str] = FetchCache(clock=Clock())

    def broken() -> tuple[str, float]:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        cache.get("u", broken)
    load = Loader()
    assert cache.get("u", load) == "document 1"


def test_bounded_the_oldest_dropped_first() -> None:
    cache: FetchCache[str] = FetchCache(capacity=2, clock=Clock())
    load = Loader()
    cache.get("a", load)
    cache.get("b", load)
    cache.get("c", load)
    assert load.calls == 3
    cache.get("c", load)
    cache.get("b", load)
    assert load.calls == 3
    cache.get("a", load)  # dropped when c came
    assert load.calls == 4


@pytest.mark.parametrize("fails", [False, True], ids=["leader-loads", "leader-raises"])
def test_one_load_in_flight_for_every_caller(fails: bool) -> None:
    """N callers at once: one loads while the others wait for it. When the leader's load
    raises, the waiters are not handed its exception: one of them loads in turn."""
    cache: FetchCache[str] = FetchCache(clock=Clock())
    release = threading.Event()
    calls: list[int] = []

    def load() -> tuple[str, float]:
        calls.append(1)
        first = len(calls) == 1
        release.wait()
        if fails and first:
            raise RuntimeError("outage")
        return "shared", 60

    callers = 8
    results: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(cache.get("u", load))
        except RuntimeError as error:
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    wait_until(lambda: cache.waiting("u") == callers - 1)
    assert len(calls) == 1
    release.set()
    for thread in threads:
        thread.join()
    assert cache.waiting("u") == 0
    if fails:
        assert len(errors) == 1 and len(results) == callers - 1
        assert len(calls) == 2
    else:
        assert results == ["shared"] * callers and not errors
        assert len(calls) == 1


@pytest.mark.parametrize(
    ("max_age", "seconds"),
    [(None, 3600), (0, 60), (5, 60), (60, 60), (600, 600), (86400, 86400), (10**9, 86400)],
)
def test_kept_per_cache_control_within_a_minute_and_a_day(
    max_age: int | None, seconds: int
) -> None:
    assert keep_for(max_age) == seconds
