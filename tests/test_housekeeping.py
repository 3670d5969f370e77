"""Background pruning: expired rows go, live ones stay, in every table that expires."""

from __future__ import annotations

import time

import sqlalchemy as sa

from gateway.housekeeping import BATCH, prune_expired
from gateway.models import (
    AuthorizationCode,
    BrowserSession,
    ClientAssertionUse,
    ClientRegistration,
    Grant,
    PushedRequest,
    RefreshToken,
    RegistrationToken,
    Revocation,
    User,
    new_id,
)
from gateway.storage import Storage


def seed(storage: Storage, user: User, expires_at: float, count: int = 1) -> None:
    with storage.session() as session:
        for _ in range(count):
            grant = Grant(id=new_id(), client_id="c", user_id=user.id, expires_at=expires_at)
            session.add(grant)
            session.add(
                RefreshToken(
                    token_hash=new_id() + new_id(),
                    grant_id=grant.id,
                    client_id="c",
                    expires_at=expires_at,
                )
            )
            session.add(
                AuthorizationCode(
                    code_hash=new_id() + new_id(),
                    client_id="c",
                    user_id=user.id,
                    redirect_uri=None,
                    auth_time=time.time(),
                    expires_at=expires_at,
                )
            )
            session.add(Revocation(kind="jti", value=new_id(), not_before=0, expires_at=expires_at))
            session.add(
                BrowserSession(
                    id=new_id(),
                    user_id=user.id,
                    auth_time=0,
                    last_seen_at=0,
                    expires_at=expires_at,
                )
            )
            session.add(
                RegistrationToken(
                    token_hash=new_id() + new_id(),
                    expires_at=expires_at,
                    uses_allowed=1,
                    uses=0,
                )
            )
            session.add(ClientRegistration(address="192.0.2.1", at=0, expires_at=expires_at))
            session.add(
                PushedRequest(
                    request_uri_hash=new_id() + new_id(),
                    client_id="c",
                    parameters={},
                    expires_at=expires_at,
                )
            )
            session.add(ClientAssertionUse(client_id="c", jti=new_id(), expires_at=expires_at))


def counts(storage: Storage) -> dict[str, int]:
    with storage.session() as session:
        return {
            model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            for model in (
                AuthorizationCode,
                RefreshToken,
                Grant,
                Revocation,
                BrowserSession,
                RegistrationToken,
                ClientRegistration,
                PushedRequest,
                ClientAssertionUse,
            )
        }


def test_prunes_expired_rows_in_batches_and_keeps_live_ones(storage: Storage, user: User) -> None:
    now = time.time()
    seed(storage, user, now - 10, count=BATCH + 3)  # more than one batch
    seed(storage, user, now + 600, count=2)

    pruned = prune_expired(storage, now)

    assert pruned == {
        "authorization_codes": BATCH + 3,
        "refresh_tokens": BATCH + 3,
        "grants": BATCH + 3,
        "revocations": BATCH + 3,
        "login_failures": 0,
        "browser_sessions": BATCH + 3,
        "registration_tokens": BATCH + 3,
        "client_registrations": BATCH + 3,
        "pushed_requests": BATCH + 3,
        "client_assertion_uses": BATCH + 3,
    }
    assert set(counts(storage).values()) == {2}
    assert prune_expired(storage, now) == dict.fromkeys(pruned, 0)
