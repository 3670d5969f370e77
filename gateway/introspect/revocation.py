"""The revocation sets every validator consults, held in memory.

A JWT is revoked when its ``jti`` is in the set, its grant (``sid``) is, or it was issued
(``iat``) before its subject's "not before" time. Revocations made in this process apply at
once (``add``); the rest arrive by ``sync`` from the database, which a background task runs
every ``[revocation] sync_interval`` seconds. ``is_revoked`` never touches the database: it is
on the proxy's hot path.

Sized for a million revoked ``jti``s (about 140 MB, loaded in about two seconds): each ``jti``
maps to the whole second its entry expires by, one ``int`` shared by all the ``jti``s of that
second, and a bucket per second lists its ``jti``s, so pruning touches only what expired.
Holding only ``str`` and ``int``, the big dict is not tracked by the garbage collector (a full
collection would otherwise walk it, stalling every thread for tens of milliseconds). ``sid``
and ``sub`` entries, far fewer, keep their ``(not_before, expires_at)``.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
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
#: Rows fetched and applied per lock hold while syncing: an ``add`` from the event loop never
#: waits long, and a batch is freed before the garbage collector's first generation fills
#: (700 objects), so a million-row reload triggers no full collection (each one walking the
#: whole heap, all threads stopped, for tens of milliseconds).
SYNC_BATCH = 500


@dataclass(frozen=True)
class RevocationEntry:
    """One revocation, as a row of the table holds it: a revoked ``jti``, grant (``sid``) or
    subject (``sub``: tokens it was issued before ``not_before``), kept until ``expires_at``."""

    kind: str
    value: str
    not_before: float
    expires_at: float


#: the rule as one statement, built once: a NULL parameter matches nothing
_REVOKED = (
    sa.select(Revocation.id)
    .where(
        sa.or_(
            sa.and_(Revocation.kind == "jti", Revocation.value == sa.bindparam("jti")),
            sa.and_(Revocation.kind == "sid", Revocation.value == sa.bindparam("sid")),
            sa.and_(
                Revocation.kind == "sub",
                Revocation.value == sa.bindparam("sub"),
                Revocation.not_before > sa.bindparam("iat"),
            ),
        )
    )
    .limit(1)
)


def revoked_in_database(
    conn: Connection | Session, jti: str | None, sid: str | None, sub: str | None, iat: float
) -> bool:
    """``RevocationCache.is_revoked``'s rule asked of the table itself: exact across replicas,
    for callers off the hot path (introspection)."""
    params = {"jti": jti or None, "sid": sid or None, "sub": sub or None, "iat": iat}
    return conn.execute(_REVOKED, params).first() is not None


class _Expiry:
    """The ``jti``s whose entries expire by ``until`` (a whole second, rounded up)."""

    __slots__ = ("until", "values")

    def __init__(self, until: int) -> None:
        self.until = until
        #: may still name a value since moved to a later bucket: pruning checks
        self.values: list[str] = []


class RevocationCache:
    def __init__(self) -> None:
        #: jti -> the ``until`` of the bucket it expires with (the latest of its entries')
        self._jti: dict[str, int] = {}
        self._expiries: dict[int, _Expiry] = {}
        self._due: list[int] = []  # heap of the buckets' ``until``
        #: sid / sub -> (not_before, expires_at)
        self._sid: dict[str, tuple[float, float]] = {}
        self._sub: dict[str, tuple[float, float]] = {}
        self._last_id = 0
        self._last_full = 0.0
        #: wall-clock time of the last successful sync with the database (0: never)
        self.synced_at = 0.0
        # writers come from the event loop (notifications) and from threads (endpoints, sync);
        # readers (is_revoked, on the hot path) take no lock: single dict lookups are atomic
        self._lock = threading.Lock()

    def add(self, entry: RevocationEntry) -> None:
        with self._lock:
            self._add(entry.kind, entry.value, entry.not_before, entry.expires_at)

    def _add(self, kind: str, value: str, not_before: float, expires_at: float) -> None:
        if kind == "jti":
            until = math.ceil(expires_at)
            current = self._jti.get(value)
            if current is not None and current >= until:
                return
            expiry = self._expiries.get(until)
            if expiry is None:
                expiry = self._expiries[until] = _Expiry(until)
                heapq.heappush(self._due, until)
            expiry.values.append(value)
            self._jti[value] = expiry.until  # the shared int, not this call's
            return
        entries = self._sid if kind == "sid" else self._sub if kind == "sub" else None
        if entries is None:
            raise ValueError(f"unknown revocation kind {kind!r}")
        current_pair = entries.get(value)
        if current_pair is None or not_before > current_pair[0]:
            entries[value] = (not_before, expires_at)

    def is_revoked(self, jti: str | None, sid: str | None, sub: str | None, iat: float) -> bool:
        """The revocation rule, on the in-memory sets (``revoked_in_database``: on the table)."""
        if jti is not None and jti in self._jti:
            return True
        if sid is not None and sid in self._sid:
            return True
        if sub is not None:
            hit = self._sub.get(sub)
            if hit is not None and iat < hit[0]:
                return True
        return False

    def __len__(self) -> int:
        return len(self._jti) + len(self._sid) + len(self._sub)

    def prune(self, at: float | None = None) -> None:
        """Forget entries that expired by ``at`` (a ``jti`` up to a second after its expiry)."""
        at = time.time() if at is None else at
        with self._lock:
            while self._due and self._due[0] <= at:
                expiry = self._expiries.pop(heapq.heappop(self._due))
                for value in expiry.values:
                    if self._jti.get(value) == expiry.until:
                        del self._jti[value]
            for entries in (self._sid, self._sub):
                for value in [v for v, (_, exp) in entries.items() if exp <= at]:
                    del entries[value]

    def sync(self, storage: Storage, full: bool = False) -> int:
        """Pull new entries from the database (blocking: run it in a thread). Returns how many.

        ``full`` reads the whole table (after a reconnection); it also happens on its own
        every ``FULL_RELOAD_EVERY`` seconds. Rows are added to the sets as they stream in, a
        batch per lock hold: nothing is dropped (a commit is never un-revoked, and what this
        process added meanwhile stays), and memory does not double while it runs."""
        started = time.time()
        full = full or started - self._last_full >= FULL_RELOAD_EVERY
        columns = (
            Revocation.id,
            Revocation.kind,
            Revocation.value,
            Revocation.not_before,
            Revocation.expires_at,
        )
        # "+ 0": scan the table rather than walk the expiry index: the rows are mostly live, so
        # the index would only add a lookup per row (SQLite)
        stmt = sa.select(*columns).where(Revocation.expires_at + 0 > started)
        if not full:
            stmt = stmt.where(Revocation.id > self._last_id - ID_OVERLAP)
        count, last_id = 0, self._last_id
        with storage.session() as session:
            result = session.connection().execute(stmt.execution_options(yield_per=SYNC_BATCH))
            for rows in result.partitions():
                with self._lock:
                    for row_id, kind, value, not_before, expires_at in rows:
                        self._add(kind, value, not_before, expires_at)
                        if row_id > last_id:
                            last_id = row_id
                count += len(rows)
        self._last_id = last_id
        if full:
            self._last_full = started
        self.prune(started)
        self.synced_at = started
        return count

    def try_sync(self, storage: Storage) -> bool:
        try:
            self.sync(storage)
        except StorageUnavailable:
            return False
        return True

    def staleness(self) -> float:
        return time.time() - self.synced_at if self.synced_at else float("inf")
