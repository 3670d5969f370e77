"""The refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).

Refresh tokens are opaque and stored hashed. Each use rotates the token; presenting a rotated
one again means it leaked, so the whole grant (the token family, the ``sid`` claim) is revoked:
its refresh tokens and every access token issued under it.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.models import Grant, RefreshToken, sha256
from tests.support.app import ISSUER, make_client, with_tokens
from tests.support.issuer import (
    decode,
    is_active,
    oauth_error,
    password_grant,
    refresh,
    running,
    tokens,
)


@pytest.fixture
def issued(client, user, confidential):
    return tokens(password_grant(client, confidential, scope="orders:read orders:write"))


def test_refresh_token_is_opaque_and_stored_hashed(storage, issued):
    token = issued["refresh_token"]
    assert token.count(".") != 2 and len(token) >= 43
    with storage.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM refresh_tokens")).all()
    assert len(rows) == 1
    assert not any(token in str(v) for v in rows[0])
    assert rows[0].token_hash == sha256(token)


def test_refresh_issues_a_new_pair_in_the_same_grant(client, user, confidential, issued):
    response = refresh(client, confidential, issued["refresh_token"])
    again = tokens(response)
    assert response.headers["cache-control"] == "no-store"
    assert again["refresh_token"] != issued["refresh_token"]
    assert again["scope"] == "orders:read orders:write"
    old, new = decode(client, issued["access_token"]), decode(client, again["access_token"])
    assert new["sid"] == old["sid"]
    assert (new["sub"], new["auth_time"]) == (user.id, old["auth_time"])
    assert "email" not in new  # orders:read orders:write release no e-mail address (RFC 9068 §6)
    assert new["jti"] != old["jti"]


def test_rotation_every_use(client, confidential, issued):
    current = issued["refresh_token"]
    seen = {current}
    for _ in range(3):
        current = tokens(refresh(client, confidential, current))["refresh_token"]
        assert current not in seen
        seen.add(current)


def test_rotated_token_fails_and_revokes_the_whole_grant(
    client, storage, confidential, resource_server, issued
):
    second = tokens(refresh(client, confidential, issued["refresh_token"]))
    third = tokens(refresh(client, confidential, second["refresh_token"]))
    sid = decode(client, third["access_token"])["sid"]

    oauth_error(refresh(client, confidential, issued["refresh_token"]), 400, "invalid_grant")

    for access in (issued["access_token"], second["access_token"], third["access_token"]):
        assert not is_active(client, resource_server, access)
    oauth_error(refresh(client, confidential, third["refresh_token"]), 400, "invalid_grant")
    with storage.session() as session:
        assert session.get(Grant, sid).revoked_at is not None
        assert (
            session.scalars(sa.select(RefreshToken).where(RefreshToken.grant_id == sid)).all() == []
        )


def test_other_grants_of_the_user_survive_reuse(client, confidential, resource_server, issued):
    other = tokens(password_grant(client, confidential))
    tokens(refresh(client, confidential, issued["refresh_token"]))
    oauth_error(refresh(client, confidential, issued["refresh_token"]), 400, "invalid_grant")
    assert is_active(client, resource_server, other["access_token"])
    tokens(refresh(client, confidential, other["refresh_token"]))


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_refreshes_one_wins_then_the_family_is_revoked(
    app, client, storage, confidential, resource_server, issued, round_
):
    """Two requests race with one refresh token: exactly one gets a new pair; the other is the
    replay of a rotated token, which revokes the family, the winner's new tokens included."""
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def attempt(i: int) -> None:
        own = TestClient(app, base_url=ISSUER)  # no lifespan: the app is already running
        barrier.wait()
        results[i] = refresh(own, confidential, issued["refresh_token"])

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 400], [r.text for r in results]
    winner = next(r for r in results if r.status_code == 200).json()
    loser = next(r for r in results if r.status_code == 400)
    assert loser.json()["error"] == "invalid_grant"

    sid = decode(client, winner["access_token"])["sid"]
    with storage.session() as session:
        assert session.get(Grant, sid).revoked_at is not None
        assert (
            session.scalars(sa.select(RefreshToken).where(RefreshToken.grant_id == sid)).all() == []
        )
    assert not is_active(client, resource_server, winner["access_token"])
    assert not is_active(client, resource_server, issued["access_token"])
    oauth_error(refresh(client, confidential, winner["refresh_token"]), 400, "invalid_grant")


# --- scope (RFC 6749 §6) -----------------------------------------------------------------------


def test_scope_can_narrow(client, confidential, issued):
    narrowed = tokens(refresh(client, confidential, issued["refresh_token"], scope="orders:read"))
    assert narrowed["scope"] == "orders:read"
    assert decode(client, narrowed["access_token"])["scope"] == "orders:read"
    # the grant keeps its scope: the next refresh may ask for all of it again
    full = tokens(refresh(client, confidential, narrowed["refresh_token"]))
    assert full["scope"] == "orders:read orders:write"


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param("profile", id="client-scope-not-granted"),
        pytest.param("orders:read profile", id="partly-outside"),
        pytest.param("admin", id="unknown"),
    ],
)
def test_scope_cannot_widen(client, confidential, issued, scope):
    response = refresh(client, confidential, issued["refresh_token"], scope=scope)
    oauth_error(response, 400, "invalid_scope")
    tokens(refresh(client, confidential, issued["refresh_token"]))  # the failure burnt nothing


# --- binding and lifetime -----------------------------------------------------------------------


def test_refresh_token_is_bound_to_its_client(client, storage, confidential, issued):
    other = make_client(storage, name="Other app")
    oauth_error(refresh(client, other, issued["refresh_token"]), 400, "invalid_grant")
    tokens(refresh(client, confidential, issued["refresh_token"]))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("made-up", id="unknown"),
        pytest.param("", id="empty"),
        pytest.param("x" * 10_000, id="huge"),
    ],
)
def test_unknown_refresh_token_is_invalid_grant(client, confidential, token):
    oauth_error(refresh(client, confidential, token), 400, "invalid_grant")


def test_family_has_an_absolute_lifetime(config, storage, user, confidential):
    with running(with_tokens(config, refresh_token_ttl=3600)) as client:
        before = time.time()
        first = tokens(password_grant(client, confidential))
        second = tokens(refresh(client, confidential, first["refresh_token"]))
        sid = decode(client, second["access_token"])["sid"]
        with storage.session() as session:
            grant = session.get(Grant, sid)
            assert before + 3600 <= grant.expires_at <= time.time() + 3600
            rows = session.scalars(sa.select(RefreshToken).where(RefreshToken.grant_id == sid))
            # rotation does not extend the family: every token ends when the grant does
            assert {r.expires_at for r in rows} == {grant.expires_at}
            # as if the hour had passed
            grant.expires_at = time.time() - 1
            session.execute(
                sa.update(RefreshToken)
                .where(RefreshToken.grant_id == sid)
                .values(expires_at=time.time() - 1)
            )
        oauth_error(refresh(client, confidential, second["refresh_token"]), 400, "invalid_grant")


def test_without_rotation_the_same_token_keeps_working(config, storage, user, confidential):
    with running(with_tokens(config, rotate_refresh_tokens=False)) as client:
        first = tokens(password_grant(client, confidential))
        for _ in range(3):
            again = tokens(refresh(client, confidential, first["refresh_token"]))
            assert "refresh_token" not in again
            decode(client, again["access_token"])
        with storage.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM refresh_tokens")).scalar() == 1


def test_revoked_refresh_token_is_invalid_grant(client, confidential, issued):
    response = client.post(
        "/oauth/revoke", data={"token": issued["refresh_token"]}, auth=confidential.auth
    )
    assert response.status_code == 200
    oauth_error(refresh(client, confidential, issued["refresh_token"]), 400, "invalid_grant")


def test_public_client_refreshes_with_its_id(client, user, public):
    first = tokens(password_grant(client, public))
    tokens(refresh(client, public, first["refresh_token"]))
