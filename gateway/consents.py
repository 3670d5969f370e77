"""Remembered consent: what a user allowed a client, so a later request for no more is not
asked again (OpenID Connect Core §3.1.2.4: the server may use a prior consent).

One row per (user, client), its ``scope`` the union of every Allow. Replicas write the same
rows, so ``remember`` lets the database decide every race: an insert that loses to a
concurrent one (the unique constraint) turns into an update, and an update only applies to the
scope it read (compare and swap), so two concurrent Allows of different scopes both count.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.errors import StorageUnavailable
from gateway.models import Consent
from gateway.storage import Storage

#: attempts before giving up on a row other writers keep changing (each loss means someone
#: else's Allow landed; a handful of concurrent Allows for one user and client is already odd)
ATTEMPTS = 8


def _stored(storage: Storage, user_id: str, client_id: str) -> str | None:
    """The row's ``scope`` as stored (None: no row)."""

    def query(conn: Connection) -> str | None:
        return conn.scalar(
            sa.select(Consent.scope).where(
                Consent.user_id == user_id, Consent.client_id == client_id
            )
        )

    return storage.read(query)


def granted_scopes(storage: Storage, user_id: str, client_id: str) -> frozenset[str] | None:
    """The scopes ``user_id`` has allowed ``client_id``, or None if it never allowed any."""
    scope = _stored(storage, user_id, client_id)
    return None if scope is None else frozenset(scope.split())


def _union(stored: str, scopes: frozenset[str]) -> str:
    return " ".join(sorted(set(stored.split()) | scopes))


def remember(storage: Storage, user_id: str, client_id: str, scopes: frozenset[str]) -> None:
    """Add ``scopes`` to what ``user_id`` allowed ``client_id``."""
    for _ in range(ATTEMPTS):
        stored = _stored(storage, user_id, client_id)
        now = time.time()
        if stored is None:
            try:
                with storage.writing() as conn:
                    conn.execute(
                        sa.insert(Consent).values(
                            user_id=user_id,
                            client_id=client_id,
                            scope=_union("", scopes),
                            created_at=now,
                            updated_at=now,
                        )
                    )
                return
            except sa.exc.IntegrityError:
                continue  # a concurrent Allow inserted it first: read it, then add to it
        wanted = _union(stored, scopes)
        if wanted == stored:
            return
        with storage.writing() as conn:
            updated = conn.execute(
                sa.update(Consent)
                .where(
                    Consent.user_id == user_id,
                    Consent.client_id == client_id,
                    Consent.scope == stored,
                )
                .values(scope=wanted, updated_at=now)
            )
        if updated.rowcount == 1:
            return
        # another writer changed (or removed) the row since we read it: read again
    raise StorageUnavailable()  # 503, retry: the writers will have settled
