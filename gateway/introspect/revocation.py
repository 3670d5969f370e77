"""The revocation sets every validator consults, held in memory.

A JWT is revoked when its ``jti`` is in the set, its grant (``sid``) is, or it was issued
(``iat``) before its subject's "not before" time. Revocations made in this process apply at
once (``add``); the rest arrive by ``sync`` from the database, which a background task runs
every ``[revocation] sync_interval`` seconds. ``is_revoked`` never touches the database: it is
on the proxy's hot path.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.errors import StorageUnavailable
from gateway.models import Revocation
from gateway.storage import Storage

log = logging.getLogger("gateway.revocation")

KINDS = ("jti", "sid", "sub")

#: How far back in ids each incremental sync looks again: rows whose ids were taken by
#: transactions that committed after a later id are still seen (the sets are idempotent).
ID_OVERLAP = 1000
#: A full reload now and then bounds what a very late commit could hide.
FULL_RELOAD_EVERY = 60.0


@dataclass(frozen=True)
class Entry:
    kind: str
    value: str
    not_before: float
    expires_at: float


def revoked_in_database(
    session: Session, jti: str | None, sid: str | None, sub: str | None, iat: float
) -> bool:
    """``RevocationCache.is_revoked``'s rule asked of the table itself: exact across replicas,
    for callers off the hot path (introspection)."""
    matches = [sa.and_(Revocation.kind == "jti", Revocation.value == jti)] if jti else []
    if sid:
        matches.append(sa.and_(Revocation.kind == "sid", Revocation.value == sid))
    if sub:
        matches.append(
            sa.and_(Revocation.kind == "sub", Revocation.value == sub, Revocation.not_before > iat)
        )
    if not matches:
        return False
    return bool(session.scalar(sa.select(sa.func.count()).where(sa.or_(*matches))))


class RevocationCache:
    def __init__(self) -> None:
        self._sets: dict[str, dict[str, tuple[float, float]]] = {k: {} for k in KINDS}
        self._last_id = 0
        self._last_full = 0.0
        #: wall-clock time of the last successful sync with the database (0: never)
        self.synced_at = 0.0
        # writers come from the event loop (notifications) and from threads (endpoints, sync);
        # readers (is_revoked, on the hot path) take no lock: single dict lookups are atomic
        self._lock = threading.Lock()

    def add(self, entry: Entry) -> None:
        with self._lock:
            self._add(entry)

    def _add(self, entry: Entry) -> None:
        current = self._sets[entry.kind].get(entry.value)
        if current is None or entry.not_before > current[0]:
            self._sets[entry.kind][entry.value] = (entry.not_before, entry.expires_at)

    def is_revoked(self, jti: str | None, sid: str | None, sub: str | None, iat: float) -> bool:
        """The revocation rule, on the in-memory sets (``revoked_in_database``: on the table)."""
        if jti is not None and jti in self._sets["jti"]:
            return True
        if sid is not None and sid in self._sets["sid"]:
            return True
        if sub is not None:
            hit = self._sets["sub"].get(sub)
            if hit is not None and iat < hit[0]:
                return True
        return False

    def __len__(self) -> int:
        return sum(len(s) for s in self._sets.values())

    def prune(self, at: float | None = None) -> None:
        at = time.time() if at is None else at
        with self._lock:
            for entries in self._sets.values():
                for value in [v for v, (_, exp) in entries.items() if exp <= at]:
                    del entries[value]

    def sync(self, storage: Storage, full: bool = False) -> int:
        """Pull new entries from the database (blocking: run it in a thread). Returns how many.

        ``full`` reloads the whole table (after a reconnection); it also happens on its own
        every ``FULL_RELOAD_EVERY`` seconds."""
        started = time.time()
        full = full or started - self._last_full >= FULL_RELOAD_EVERY
        stmt = sa.select(Revocation).where(Revocation.expires_at > started)
        if not full:
            stmt = stmt.where(Revocation.id > self._last_id - ID_OVERLAP)
        with storage.session() as session:
            rows = session.scalars(stmt).all()
        with self._lock:
            if full:
                fresh = RevocationCache()
                for row in rows:
                    fresh._add(Entry(row.kind, row.value, row.not_before, row.expires_at))
                # keep what this process added meanwhile: a commit is never un-revoked
                for kind in KINDS:
                    for value, (nb, exp) in self._sets[kind].items():
                        fresh._add(Entry(kind, value, nb, exp))
                self._sets = fresh._sets
                self._last_full = started
            else:
                for row in rows:
                    self._add(Entry(row.kind, row.value, row.not_before, row.expires_at))
        if rows:
            self._last_id = max(self._last_id, max(r.id for r in rows))
        self.prune(started)
        self.synced_at = started
        return len(rows)

    def try_sync(self, storage: Storage) -> bool:
        try:
            self.sync(storage)
        except StorageUnavailable:
            return False
        return True

    def staleness(self) -> float:
        return time.time() - self.synced_at if self.synced_at else float("inf")
