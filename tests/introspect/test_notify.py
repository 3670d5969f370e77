"""LISTEN/NOTIFY revocation push on PostgreSQL: applied on arrival, caught up on reconnect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import pytest
from sqlalchemy.engine import make_url

from gateway.config import Config
from gateway.errors import StorageUnavailable
from gateway.introspect.notify import RevocationListener
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.revoker import Revoker
from gateway.storage import Storage
from tests.support.outage_proxy import OutageProxy


@pytest.fixture
def postgres(storage: Storage) -> Storage:
    if not storage.is_postgres:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; CI runs this file on PostgreSQL")
    return storage


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def revoke_elsewhere(config: Config, storage: Storage, jti: str) -> None:
    """Another replica's revocation: its own cache, its own transaction."""
    other = Revoker(storage, RevocationCache(), config.tokens.access_token_ttl, 30)
    await anyio.to_thread.run_sync(
        lambda: other.revoke(lambda s: other.jti(s, jti, time.time() + 60))
    )


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
async def listening(
    postgres: Storage, executor: ThreadPoolExecutor
) -> AsyncIterator[RevocationListener]:
    listener = RevocationListener(postgres, RevocationCache(), executor)
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.connected.wait(), 10)
    yield listener
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_notification_is_applied_without_any_poll(
    config: Config, postgres: Storage, listening: RevocationListener
) -> None:
    await revoke_elsewhere(config, postgres, "pushed")
    await until(lambda: listening.cache.is_revoked("pushed", None, None, 0))
    assert listening.received == 1


async def test_what_was_missed_while_disconnected_is_caught_up(
    config: Config, postgres: Storage, executor: ThreadPoolExecutor
) -> None:
    url = make_url(postgres.url)
    outage = OutageProxy((url.host or "127.0.0.1", url.port or 5432))
    outage.start()
    host, port = outage.address
    through = Storage(url.set(host=host, port=port).render_as_string(hide_password=False))
    listener = RevocationListener(through, RevocationCache(), executor)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        outage.stop()
        await until(lambda: not listener.connected.is_set())

        await revoke_elsewhere(config, postgres, "missed")  # no listener can hear it
        outage.start()

        await until(lambda: listener.cache.is_revoked("missed", None, None, 0), timeout=15)
        assert listener.received == 0  # it came from the catch-up sync, not a notification
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        outage.stop()
        through.dispose()


class LosesTheDatabaseOnce(RevocationCache):
    """The database lost between LISTEN and the catch-up read: a window too narrow to hit with
    a real outage deterministically, so the first full sync fails as ``Storage`` would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def sync(self, storage: Storage, full: bool = False) -> int:
        if not self.failed:
            self.failed = True
            raise StorageUnavailable()
        return super().sync(storage, full)


async def test_a_catch_up_sync_that_loses_the_database_reconnects(
    postgres: Storage, executor: ThreadPoolExecutor
) -> None:
    """It used to end the listener task (and its error surfaced at shutdown)."""
    listener = RevocationListener(postgres, LosesTheDatabaseOnce(), executor)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
