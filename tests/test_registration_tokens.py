"""Initial access tokens (``gateway.registration_tokens``): hashed at rest, each use spent
once by a conditional update, never past their expiry, uses or revocation."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import registration_tokens
from gateway.errors import InvalidInput
from gateway.models import RegistrationToken, sha256
from gateway.storage import Storage


def make(storage: Storage, **kwargs: Any) -> registration_tokens.NewToken:
    with storage.session() as session:
        return registration_tokens.create_token(session, **kwargs)


def spend(storage: Storage, token: str, now: float | None = None) -> bool:
    with storage.writing() as conn:
        return registration_tokens.spend(conn, token, now)


def usable(storage: Storage, token: str, now: float | None = None) -> bool:
    return storage.read(lambda conn: registration_tokens.is_usable(conn, token, now))


def test_a_token_is_kept_as_its_hash(storage: Storage) -> None:
    new = make(storage, ttl=60, uses=3)
    with storage.session() as session:
        (row,) = session.scalars(sa.select(RegistrationToken)).all()
    assert row.token_hash == sha256(new.token) and new.token not in (row.id, row.token_hash)
    assert row.uses_allowed == 3 and row.uses == 0
    assert row.expires_at == pytest.approx(row.created_at + 60)
    assert len(new.token) >= 43  # 256 bits, base64url


def test_each_use_is_spent_once_and_the_last_ends_it(storage: Storage) -> None:
    new = make(storage, uses=2)
    assert usable(storage, new.token)
    assert spend(storage, new.token) and spend(storage, new.token)
    assert not usable(storage, new.token)
    assert not spend(storage, new.token)
    with storage.session() as session:
        (row,) = session.scalars(sa.select(RegistrationToken)).all()
        assert row.uses == 2 and registration_tokens.status(row) == "used"


def test_expiry_and_revocation_end_a_token(storage: Storage) -> None:
    now = time.time()
    new = make(storage, ttl=60, now=now)
    assert usable(storage, new.token, now + 59)
    assert not usable(storage, new.token, now + 60)
    assert not spend(storage, new.token, now + 60)
    with storage.session() as session:
        assert registration_tokens.revoke_token(session, new.row.id)
        assert not registration_tokens.revoke_token(session, new.row.id)  # already
    assert not usable(storage, new.token, now) and not spend(storage, new.token, now)
    with storage.session() as session:
        (row,) = registration_tokens.list_tokens(session)
        assert registration_tokens.status(row, now) == "revoked"
    assert not usable(storage, "not-a-token")


def test_of_concurrent_spends_of_one_use_exactly_one_wins(storage: Storage) -> None:
    new = make(storage, uses=3)
    start = threading.Barrier(8)
    results: list[bool] = []

    def attempt() -> None:
        start.wait()
        results.append(spend(storage, new.token))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True] * 3


@pytest.mark.parametrize(
    ("ttl", "uses"), [pytest.param(0, 1, id="ttl"), pytest.param(60, 0, id="uses")]
)
def test_a_token_must_last_and_allow_something(storage: Storage, ttl: int, uses: int) -> None:
    with storage.session() as session, pytest.raises(InvalidInput):
        registration_tokens.create_token(session, ttl=ttl, uses=uses)


@pytest.mark.parametrize("token_id", ["nope", "\x00", ""])
def test_revoking_an_unknown_id_is_refused(storage: Storage, token_id: str) -> None:
    with storage.session() as session, pytest.raises(InvalidInput):
        registration_tokens.revoke_token(session, token_id)
