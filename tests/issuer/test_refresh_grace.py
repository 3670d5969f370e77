"""Refresh rotation with a reuse grace (``tokens.refresh_reuse_grace``).

Two tabs that refresh at once present one refresh token twice. Within the grace after its
rotation, the second presentation gets a new access token and the *same* successor refresh
token, never a second one; past the grace, once the successor has been used, or for any older
token, it is reuse (RFC 9700 §4.14.2) and the whole family is revoked, as without a grace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.config import Config
from gateway.issuer import records
from gateway.issuer.rotation import successor_token
from gateway.models import Grant, RefreshToken, sha256
from gateway.storage import Storage
from tests.support.app import ISSUER, Registered, with_tokens
from tests.support.issuer import (
    decode,
    is_active,
    oauth_error,
    password_grant,
    refresh,
    running,
    tokens,
)

GRACE = 30.0


@pytest.fixture
def graceful(config: Config, storage: Storage, user: object) -> Iterator[TestClient]:
    """The issuer with a 30 s reuse grace, on the test database."""
    with running(with_tokens(config, refresh_reuse_grace=GRACE)) as client:
        yield client


def first_tokens(client: TestClient, registered: Registered) -> dict:
    return tokens(password_grant(client, registered, scope="orders:read orders:write"))


def as_if_rotated_ago(storage: Storage, refresh_token: str, seconds: float) -> None:
    with storage.session() as session:
        session.execute(
            sa.update(RefreshToken)
            .where(RefreshToken.token_hash == sha256(refresh_token))
            .values(rotated_at=time.time() - seconds)
        )


def family_revoked(storage: Storage, sid: str) -> bool:
    with storage.session() as session:
        revoked = session.get(Grant, sid).revoked_at is not None
        left = session.scalars(sa.select(RefreshToken).where(RefreshToken.grant_id == sid)).all()
    return revoked and left == []


# --- within the grace ---------------------------------------------------------------------------


def test_within_the_grace_the_same_successor_and_a_new_access_token(
    graceful, storage, confidential, resource_server
):
    first = first_tokens(graceful, confidential)
    one = tokens(refresh(graceful, confidential, first["refresh_token"]))
    two = tokens(refresh(graceful, confidential, first["refresh_token"]))

    assert two["refresh_token"] == one["refresh_token"] != first["refresh_token"]
    claims_one, claims_two = (decode(graceful, t["access_token"]) for t in (one, two))
    assert claims_two["jti"] != claims_one["jti"]
    assert claims_two["sid"] == claims_one["sid"]
    for issued in (first, one, two):
        assert is_active(graceful, resource_server, issued["access_token"])
    with storage.engine.connect() as conn:  # one successor, stored once
        assert conn.execute(sa.text("SELECT count(*) FROM refresh_tokens")).scalar() == 2
    # the family goes on from the one successor
    tokens(refresh(graceful, confidential, two["refresh_token"]))


def test_the_successor_is_derived_and_stored_hashed(graceful, storage, tmp_path, confidential):
    first = first_tokens(graceful, confidential)
    successor = tokens(refresh(graceful, confidential, first["refresh_token"]))["refresh_token"]
    secret = (tmp_path / "keys" / "session.key").read_bytes()
    assert successor == successor_token(secret, first["refresh_token"])
    assert len(successor) == 43 and successor != successor_token(b"other", first["refresh_token"])
    with storage.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM refresh_tokens")).all()
    assert not any(successor in str(value) for row in rows for value in row)
    rotated = next(r for r in rows if r.token_hash == sha256(first["refresh_token"]))
    assert rotated.successor_hash == sha256(successor)


def test_a_chain_of_graces(graceful, confidential):
    """Two tabs keep refreshing together: each round, both get the same new token."""
    current = first_tokens(graceful, confidential)["refresh_token"]
    for _ in range(3):
        one = tokens(refresh(graceful, confidential, current))["refresh_token"]
        two = tokens(refresh(graceful, confidential, current))["refresh_token"]
        assert one == two != current
        current = one


# --- past the grace, or not the just-rotated token: reuse, as without a grace ---------------


def test_past_the_grace_the_family_is_revoked(graceful, storage, confidential, resource_server):
    first = first_tokens(graceful, confidential)
    second = tokens(refresh(graceful, confidential, first["refresh_token"]))
    as_if_rotated_ago(storage, first["refresh_token"], GRACE + 1)

    oauth_error(refresh(graceful, confidential, first["refresh_token"]), 400, "invalid_grant")

    assert family_revoked(storage, decode(graceful, second["access_token"])["sid"])
    for issued in (first, second):
        assert not is_active(graceful, resource_server, issued["access_token"])
    oauth_error(refresh(graceful, confidential, second["refresh_token"]), 400, "invalid_grant")


def test_just_within_the_grace_still_counts(graceful, storage, confidential):
    first = first_tokens(graceful, confidential)
    second = tokens(refresh(graceful, confidential, first["refresh_token"]))
    as_if_rotated_ago(storage, first["refresh_token"], GRACE - 2)
    again = tokens(refresh(graceful, confidential, first["refresh_token"]))
    assert again["refresh_token"] == second["refresh_token"]


def test_once_the_successor_is_used_the_old_token_is_reuse(
    graceful, storage, confidential, resource_server
):
    """A → B → C within seconds: A again is the predecessor's predecessor of the live token."""
    first = first_tokens(graceful, confidential)
    second = tokens(refresh(graceful, confidential, first["refresh_token"]))
    third = tokens(refresh(graceful, confidential, second["refresh_token"]))

    oauth_error(refresh(graceful, confidential, first["refresh_token"]), 400, "invalid_grant")

    assert family_revoked(storage, decode(graceful, third["access_token"])["sid"])
    assert not is_active(graceful, resource_server, third["access_token"])
    oauth_error(refresh(graceful, confidential, third["refresh_token"]), 400, "invalid_grant")


def test_a_token_rotated_without_a_grace_is_reuse_within_one(
    client, graceful, storage, confidential
):
    """Rotated by an issuer without the grace (before it was turned on): its successor was
    random, so it cannot be handed out again; presenting the old token is reuse."""
    first = first_tokens(client, confidential)
    second = tokens(refresh(client, confidential, first["refresh_token"]))
    oauth_error(refresh(graceful, confidential, first["refresh_token"]), 400, "invalid_grant")
    assert family_revoked(storage, decode(client, second["access_token"])["sid"])


def test_without_a_grace_a_second_presentation_revokes_at_once(
    client, storage, user, confidential, resource_server
):
    """The default, ``refresh_reuse_grace = 0``: today's rotation, to the letter."""
    first = first_tokens(client, confidential)
    second = tokens(refresh(client, confidential, first["refresh_token"]))
    oauth_error(refresh(client, confidential, first["refresh_token"]), 400, "invalid_grant")
    assert family_revoked(storage, decode(client, second["access_token"])["sid"])
    assert not is_active(client, resource_server, second["access_token"])


def test_a_revoked_family_gives_nothing_within_the_grace(graceful, confidential):
    first = first_tokens(graceful, confidential)
    second = tokens(refresh(graceful, confidential, first["refresh_token"]))
    revoked = graceful.post(
        "/oauth/revoke", data={"token": second["refresh_token"]}, auth=confidential.auth
    )
    assert revoked.status_code == 200
    oauth_error(refresh(graceful, confidential, first["refresh_token"]), 400, "invalid_grant")


# --- the race ----------------------------------------------------------------------------------


@pytest.fixture
def read_before_the_rotation(monkeypatch):
    """Every refresh reads its token as it was before any rotation: as the loser of a race
    does, which read the row before the winner committed."""

    def stale(conn, token_hash):
        token = records.load_refresh_token(conn, token_hash)
        if token is not None:
            token.rotated_at = None
        return token

    monkeypatch.setattr("gateway.issuer.rotation.load_refresh_token", stale)


@pytest.mark.parametrize(
    ("successor_used", "answer"),
    [
        pytest.param(False, 200, id="successor-unused-same-successor"),
        pytest.param(True, 400, id="successor-used-reuse"),
    ],
)
def test_the_loser_of_the_rotation_is_decided_in_its_transaction(
    graceful, storage, confidential, read_before_the_rotation, successor_used, answer
):
    first = first_tokens(graceful, confidential)
    won = tokens(refresh(graceful, confidential, first["refresh_token"]))
    if successor_used:
        tokens(refresh(graceful, confidential, won["refresh_token"]))

    lost = refresh(graceful, confidential, first["refresh_token"])

    assert lost.status_code == answer, lost.text
    sid = decode(graceful, won["access_token"])["sid"]
    if answer == 200:
        assert lost.json()["refresh_token"] == won["refresh_token"]
        assert not family_revoked(storage, sid)
    else:
        assert lost.json()["error"] == "invalid_grant"
        assert family_revoked(storage, sid)


def test_without_a_grace_the_loser_revokes_the_family(
    client, storage, user, confidential, read_before_the_rotation
):
    first = first_tokens(client, confidential)
    won = tokens(refresh(client, confidential, first["refresh_token"]))
    oauth_error(refresh(client, confidential, first["refresh_token"]), 400, "invalid_grant")
    assert family_revoked(storage, decode(client, won["access_token"])["sid"])


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_refreshes_both_get_the_one_successor(
    config, storage, user, confidential, resource_server, round_
):
    """Two requests race with one refresh token: the database lets one rotate it, and the
    other, finding it rotated within the grace, gets the same successor; the family lives."""
    with running(with_tokens(config, refresh_reuse_grace=GRACE)) as graceful:
        first = first_tokens(graceful, confidential)
        barrier = threading.Barrier(2)
        results: list = [None, None]

        def attempt(i: int) -> None:
            own = TestClient(graceful.app, base_url=ISSUER)  # the app is already running
            barrier.wait()
            results[i] = refresh(own, confidential, first["refresh_token"])

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        one, two = (tokens(r) for r in results)
        assert one["refresh_token"] == two["refresh_token"]
        assert one["access_token"] != two["access_token"]
        for issued in (one, two):
            assert is_active(graceful, resource_server, issued["access_token"])
        tokens(refresh(graceful, confidential, one["refresh_token"]))
