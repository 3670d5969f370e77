"""Remembered consent's resources (RFC 8707): the union of every Allow's, NULL while none was
named (the default audience), and concurrent Allows of different resources all counted."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from gateway import accounts
from gateway.consents import ConsentGiven, given_consent, remember
from gateway.models import Consent, User
from gateway.storage import Storage

DEFAULT = "https://gateway.example.com"
ORDERS = "https://api.example.com/orders"
BILLING = "https://billing.example.com"
CLIENT = "client-1"


@pytest.fixture
def alice(storage: Storage) -> User:
    with storage.session() as session:
        return accounts.create_user(session, "alice@example.com", "correct horse battery staple")


def test_none_named_stays_null(storage: Storage, alice: User) -> None:
    remember(storage, alice.id, CLIENT, frozenset({"a"}), None, (DEFAULT,))
    remember(storage, alice.id, CLIENT, frozenset({"b"}), None, (DEFAULT,))
    assert given_consent(storage, alice.id, CLIENT) == ConsentGiven(frozenset({"a", "b"}), None)


def test_named_ones_are_a_sorted_union(storage: Storage, alice: User) -> None:
    remember(storage, alice.id, CLIENT, frozenset({"a"}), (ORDERS,), (DEFAULT,))
    remember(storage, alice.id, CLIENT, frozenset({"a"}), (BILLING, ORDERS), (DEFAULT,))
    assert given_consent(storage, alice.id, CLIENT) == ConsentGiven(
        frozenset({"a"}), frozenset({ORDERS, BILLING})
    )
    with storage.session() as session:
        assert session.scalars(sa.select(Consent.resources)).one() == sorted([BILLING, ORDERS])


@pytest.mark.parametrize(
    ("first", "then", "stored"),
    [
        pytest.param(None, (ORDERS,), [ORDERS, DEFAULT], id="null-then-named"),
        pytest.param((ORDERS,), None, [ORDERS, DEFAULT], id="named-then-null"),
    ],
)
def test_null_means_the_default_once_mixed(
    storage: Storage,
    alice: User,
    first: tuple[str, ...] | None,
    then: tuple[str, ...] | None,
    stored: list[str],
) -> None:
    """What a NULL row covered (the default audience) it still covers once resources join."""
    remember(storage, alice.id, CLIENT, frozenset({"a"}), first, (DEFAULT,))
    remember(storage, alice.id, CLIENT, frozenset({"a"}), then, (DEFAULT,))
    found = given_consent(storage, alice.id, CLIENT)
    assert found is not None and found.resources == frozenset(stored)


def test_nothing_new_writes_nothing(storage: Storage, alice: User) -> None:
    remember(storage, alice.id, CLIENT, frozenset({"a"}), (ORDERS,), (DEFAULT,))
    with storage.session() as session:
        before = session.scalars(sa.select(Consent.updated_at)).one()
    remember(storage, alice.id, CLIENT, frozenset({"a"}), (ORDERS,), (DEFAULT,))
    with storage.session() as session:
        assert session.scalars(sa.select(Consent.updated_at)).one() == before


def test_concurrent_allows_of_different_resources_all_count(storage: Storage, alice: User) -> None:
    """The compare and swap covers the resources too: neither Allow's resource is lost."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def allow(resource: str) -> None:
        try:
            barrier.wait(timeout=10)
            remember(storage, alice.id, CLIENT, frozenset({"a"}), (resource,), (DEFAULT,))
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    for round_ in range(10):
        with storage.session() as session:
            session.execute(sa.delete(Consent))
        if round_ % 2:  # a row to update (compare and swap), else one to insert (unique)
            remember(storage, alice.id, CLIENT, frozenset({"a"}), None, (DEFAULT,))
        resources = (f"https://r{round_}.example.com/one", f"https://r{round_}.example.com/two")
        threads = [threading.Thread(target=allow, args=(r,)) for r in resources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        found = given_consent(storage, alice.id, CLIENT)
        expected = {*resources, *([DEFAULT] if round_ % 2 else [])}
        assert found is not None and found.resources == frozenset(expected)
