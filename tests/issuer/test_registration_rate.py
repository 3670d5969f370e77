"""The per-address registration rate (``gateway.issuer.registration_rate``): an hour that
slides, a refusal that leaves nothing behind, and concurrent registrations from one address
that take turns, so that no more than the limit ever get through (on PostgreSQL too, where
nothing but the advisory lock makes them wait)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from gateway.issuer.registration_rate import HOUR, RegistrationRate, TooManyRegistrations
from gateway.models import ClientRegistration
from gateway.storage import Storage


def count(storage: Storage, rate: RegistrationRate, address: str, now: float) -> bool:
    try:
        with storage.session(write=True) as session:
            rate.count(session.connection(), address, now)
    except TooManyRegistrations:
        return False
    return True


def rows(storage: Storage) -> list[tuple[str, float]]:
    with storage.session() as session:
        found = session.execute(sa.select(ClientRegistration.address, ClientRegistration.at))
        return sorted((address, at) for address, at in found)


def test_the_limit_holds_over_any_hour(storage: Storage) -> None:
    rate = RegistrationRate(2, storage.is_postgres)
    start = time.time()
    assert count(storage, rate, "a", start)
    assert count(storage, rate, "a", start + 10)
    assert count(storage, rate, "b", start + 20)  # another address has its own count
    with pytest.raises(TooManyRegistrations) as refused:
        with storage.session(write=True) as session:
            rate.count(session.connection(), "a", start + 1800)
    assert refused.value.retry_after == 1800
    assert refused.value.status_code == 429 and refused.value.error == "too_many_requests"
    assert rows(storage) == [("a", start), ("a", start + 10), ("b", start + 20)]
    assert not count(storage, rate, "a", start + HOUR - 0.5)  # the first is still in the hour
    assert count(storage, rate, "a", start + HOUR)  # when Retry-After said: it has left it


def test_concurrent_registrations_from_one_address_take_turns(storage: Storage) -> None:
    rate = RegistrationRate(3, storage.is_postgres)
    now = time.time()
    start = threading.Barrier(10)
    results: list[bool] = []

    def attempt() -> None:
        start.wait()
        results.append(count(storage, rate, "198.51.100.7", now))

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True] * 3
    assert len(rows(storage)) == 3
