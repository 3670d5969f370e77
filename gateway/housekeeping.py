"""Pruning what can no longer matter: expired codes, refresh tokens, grants, revocations and
login failures past the throttle's window, browser sessions past their lifetime, initial access
tokens past theirs, registrations past the hour their address is counted for, pushed
authorization requests past their lifetime (or their login's, once redeemed), and the ``jti``s
of client assertions past their assertion's expiry.

Runs in the background of every replica (deletes are idempotent, so replicas need no
coordination), in small batches so no request waits long behind its locks.
"""

from __future__ import annotations

import time
from typing import cast

import sqlalchemy as sa

from gateway.models import (
    AuthorizationCode,
    BrowserSession,
    ClientAssertionUse,
    ClientRegistration,
    Grant,
    LoginFailure,
    PushedRequest,
    RefreshToken,
    RegistrationToken,
    Revocation,
)
from gateway.storage import Storage

BATCH = 500
#: children before parents: refresh tokens reference grants
EXPIRING = (
    AuthorizationCode,
    RefreshToken,
    Grant,
    Revocation,
    LoginFailure,
    BrowserSession,
    RegistrationToken,
    ClientRegistration,
    PushedRequest,
    ClientAssertionUse,
)


def prune_expired(storage: Storage, now: float | None = None) -> dict[str, int]:
    """Delete rows whose ``expires_at`` has passed; returns how many per table."""
    now = time.time() if now is None else now
    counts: dict[str, int] = {}
    for model in EXPIRING:
        table = cast(sa.Table, model.__table__)
        key = table.primary_key.columns[0]
        total = 0
        while True:
            expired = sa.select(key).where(table.c.expires_at < now).limit(BATCH)
            with storage.session(write=True) as session:
                result = session.connection().execute(sa.delete(table).where(key.in_(expired)))
                deleted = result.rowcount
            total += deleted
            if deleted < BATCH:
                break
        counts[table.name] = total
    return counts
