"""Revocation push between replicas on PostgreSQL: ``NOTIFY`` on commit, ``LISTEN`` everywhere.

A revoking transaction sends its entries on the ``gateway_revocations`` channel; PostgreSQL
delivers the notification only if, and when, the transaction commits. Every replica listens
on its own connection and applies what arrives at once. Notifications sent while a listener
was disconnected are lost, so each (re)connection starts with a full ``sync`` from the
table; the periodic poll stays on as the fallback (and is the only path on SQLite).
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import Executor

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from gateway.errors import StorageUnavailable
from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.storage import Storage

log = logging.getLogger("gateway.revocation")

CHANNEL = "gateway_revocations"
#: PostgreSQL caps a payload at 8000 bytes; past this, listeners are told to sync instead
MAX_PAYLOAD = 7000
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)


def encode(entries: list[RevocationEntry]) -> str:
    payload = json.dumps([[e.kind, e.value, e.not_before, e.expires_at] for e in entries])
    return payload if len(payload) <= MAX_PAYLOAD else "sync"


def decode(payload: str) -> list[RevocationEntry] | None:
    """The entries of a notification; None when the listener should sync from the table."""
    try:
        rows = json.loads(payload)
        return [RevocationEntry(str(k), str(v), float(nb), float(exp)) for k, v, nb, exp in rows]
    except (ValueError, TypeError):
        return None


def publish(session: Session, entries: list[RevocationEntry]) -> None:
    """Queue a notification in the revoking transaction (sent by PostgreSQL at commit)."""
    if entries and session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_notify(CHANNEL, encode(entries))))


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class RevocationListener:
    """Keeps a LISTEN connection open, reconnecting (and catching up) after any loss."""

    def __init__(self, storage: Storage, cache: RevocationCache, executor: Executor) -> None:
        self.storage = storage
        self.cache = cache
        #: where the blocking catch-up syncs run (the owner waits for it on shutdown)
        self.executor = executor
        self.connected = asyncio.Event()
        self.received = 0

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError, StorageUnavailable) as exc:
                # StorageUnavailable: the catch-up sync lost the database after LISTEN worked
                log.warning("revocation listener disconnected: %s", exc.__class__.__name__)
            self.connected.clear()
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1

    async def _full_sync(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.cache.sync, self.storage, True)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            libpq_url(self.storage.url), autocommit=True, connect_timeout=3
        )
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            # whatever was revoked while we were not listening
            await self._full_sync()
            self.connected.set()
            log.info("listening for revocations on %s", CHANNEL)
            async for notify in conn.notifies():
                self.received += 1
                entries = decode(notify.payload)
                if entries is None:  # rare: a revocation too big for one payload
                    await self._full_sync()
                    continue
                for entry in entries:
                    self.cache.add(entry)
