"""The upstream client's keep-alive pool: reuse, Connection: close, stale connections and the
one retry (RFC 9112 §9.3.1), limits under concurrency, idle timeout, maximum age, connect
failures."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.config import PoolConfig
from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.proxy.forwarder import Forwarder, Origin
from gateway.proxy.http1.connection import Connection
from tests.support.upstreams import (
    OK_2,
    PROMPT,
    ClosesOnReuse,
    Upstreams,
    fetch,
    pieces,
    read_request,
    replies,
)


def idle_connections(forwarder: Forwarder, origin: Origin) -> list[Connection]:
    """White-box: the pool's idle list, to wait until the client has seen an upstream close."""
    return list(forwarder._pools[origin]._idle)


async def test_connections_are_kept_alive_and_reused(upstreams: Upstreams) -> None:
    up = await upstreams.start(replies(OK_2))
    forwarder = await upstreams.forwarder()
    for _ in range(5):
        answer, received = await fetch(forwarder, up.origin)
        assert (answer.status, received) == (200, b"ok")
    assert up.accepted == 1


async def test_the_callers_connection_close_is_honoured(upstreams: Upstreams) -> None:
    up = await upstreams.start(replies(OK_2))
    forwarder = await upstreams.forwarder()
    for _ in range(2):
        await fetch(forwarder, up.origin, "GET", [(b"connection", b"close")])
    assert up.accepted == 2


async def test_a_pooled_connection_the_upstream_closed_is_never_used(
    upstreams: Upstreams,
) -> None:
    """Even for a POST, which could not be retried: the close is seen before reuse."""
    up = await upstreams.start(replies(OK_2, close=True))
    forwarder = await upstreams.forwarder()
    await fetch(forwarder, up.origin)
    [stale] = idle_connections(forwarder, up.origin)
    async with asyncio.timeout(PROMPT):
        await stale.wait_closed()
    answer, _ = await fetch(forwarder, up.origin, "POST", [(b"content-length", b"1")], pieces(b"x"))
    assert answer.status == 200 and up.accepted == 2


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
async def test_an_idempotent_request_on_a_stale_connection_is_retried_once(
    upstreams: Upstreams, method: str
) -> None:
    upstream = ClosesOnReuse(answered=2)
    up = await upstreams.start(upstream)
    forwarder = await upstreams.forwarder()
    await fetch(forwarder, up.origin)
    answer, _ = await fetch(forwarder, up.origin, method)
    assert answer.status == 200
    assert (up.accepted, upstream.requests) == (2, 3)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("POST", None, id="post"),
        pytest.param("PATCH", None, id="patch"),
        pytest.param("PUT", b"x", id="put-with-body"),
    ],
)
async def test_a_request_that_may_not_be_repeated_is_never_retried(
    upstreams: Upstreams, method: str, body: bytes | None
) -> None:
    upstream = ClosesOnReuse(answered=2)
    up = await upstreams.start(upstream)
    forwarder = await upstreams.forwarder()
    await fetch(forwarder, up.origin)
    with pytest.raises(UpstreamUnavailable):
        await forwarder.open(up.origin, method, b"/", [], pieces(body) if body else None)
    assert (up.accepted, upstream.requests) == (1, 2)


async def test_the_retry_happens_once_only(upstreams: Upstreams) -> None:
    upstream = ClosesOnReuse(answered=1)
    up = await upstreams.start(upstream)
    forwarder = await upstreams.forwarder()
    await fetch(forwarder, up.origin)
    with pytest.raises(UpstreamUnavailable):
        await forwarder.open(up.origin, "GET", b"/", [], None)
    assert (up.accepted, upstream.requests) == (2, 3)


async def test_a_failure_on_a_fresh_connection_is_not_retried(upstreams: Upstreams) -> None:
    upstream = ClosesOnReuse(answered=0)
    up = await upstreams.start(upstream)
    forwarder = await upstreams.forwarder()
    with pytest.raises(UpstreamUnavailable):
        await forwarder.open(up.origin, "GET", b"/", [], None)
    assert (up.accepted, upstream.requests) == (1, 1)


# --- limits ------------------------------------------------------------------------------


async def test_never_more_connections_than_the_limit_and_waiters_get_served(
    upstreams: Upstreams,
) -> None:
    release = asyncio.Event()
    waiting = 0

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal waiting
        while True:
            await read_request(reader)
            waiting += 1
            up._notify()
            await release.wait()
            writer.write(OK_2)
            await writer.drain()

    up = await upstreams.start(held)
    forwarder = await upstreams.forwarder(pool=PoolConfig(max_connections_per_origin=2))
    requests = [asyncio.ensure_future(fetch(forwarder, up.origin)) for _ in range(8)]
    await up.until(lambda: waiting == 2)
    assert up.accepted == 2
    release.set()
    async with asyncio.timeout(PROMPT):
        answers = await asyncio.gather(*requests)
    assert [received for _, received in answers] == [b"ok"] * 8
    assert (up.accepted, up.max_open) == (2, 2)


async def test_waiting_for_a_slot_past_the_connect_timeout_is_504(upstreams: Upstreams) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    up = await upstreams.start(never)
    forwarder = await upstreams.forwarder(
        connect_timeout=0.2, pool=PoolConfig(max_connections_per_origin=1)
    )
    holder = asyncio.ensure_future(forwarder.open(up.origin, "GET", b"/", [], None))
    await up.until(lambda: up.accepted == 1)
    with pytest.raises(UpstreamTimeout):
        await forwarder.open(up.origin, "GET", b"/", [], None)
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder


async def test_a_dropped_connection_passes_its_slot_to_a_waiter(upstreams: Upstreams) -> None:
    async def partial(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
            await writer.drain()

    up = await upstreams.start(partial)
    forwarder = await upstreams.forwarder(pool=PoolConfig(max_connections_per_origin=1))
    first = await forwarder.open(up.origin, "GET", b"/", [], None)
    second = asyncio.ensure_future(forwarder.open(up.origin, "GET", b"/", [], None))
    await asyncio.sleep(0)  # the second request now waits in the pool
    first.close()  # mid-body: dropped, not pooled
    async with asyncio.timeout(PROMPT):
        answer = await second
    answer.close()
    # (the server may see the new connection before the old one's close: no max_open here)
    assert (answer.status, up.accepted) == (200, 2)


# --- idle timeout and maximum age --------------------------------------------------------


async def test_an_idle_connection_is_closed_after_the_idle_timeout(upstreams: Upstreams) -> None:
    up = await upstreams.start(replies(OK_2))
    forwarder = await upstreams.forwarder(pool=PoolConfig(pool_idle_timeout=0.05))
    await fetch(forwarder, up.origin)
    await up.until(lambda: up.closed == 1)
    await fetch(forwarder, up.origin)
    assert up.accepted == 2


async def test_a_connection_is_closed_at_its_maximum_age(upstreams: Upstreams) -> None:
    up = await upstreams.start(replies(OK_2))
    forwarder = await upstreams.forwarder(pool=PoolConfig(pool_max_age=0.1))
    await fetch(forwarder, up.origin)
    await up.until(lambda: up.closed == 1)


async def test_a_connection_past_its_maximum_age_is_not_pooled_after_its_exchange(
    upstreams: Upstreams,
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.15)  # the connection ages past pool_max_age mid-exchange
        writer.write(OK_2)
        await reader.read()

    up = await upstreams.start(slow)
    forwarder = await upstreams.forwarder(pool=PoolConfig(pool_max_age=0.1, pool_idle_timeout=60))
    await fetch(forwarder, up.origin)
    assert idle_connections(forwarder, up.origin) == []
    await up.until(lambda: up.closed == 1)


async def test_closing_the_forwarder_closes_its_pooled_connections(
    upstreams: Upstreams,
) -> None:
    up = await upstreams.start(replies(OK_2))
    forwarder = await upstreams.forwarder()
    await fetch(forwarder, up.origin)
    await forwarder.close()
    await up.until(lambda: up.closed == 1)
    with pytest.raises(UpstreamUnavailable):
        await forwarder.open(up.origin, "GET", b"/", [], None)


# --- connecting --------------------------------------------------------------------------


async def test_a_refused_connection_is_502(upstreams: Upstreams) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forwarder = await upstreams.forwarder()
    with pytest.raises(UpstreamUnavailable) as caught:
        await forwarder.open(Origin.from_url(f"http://127.0.0.1:{port}"), "GET", b"/", [], None)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


async def test_a_connect_that_takes_too_long_is_504(upstreams: Upstreams) -> None:
    """A listener whose backlog is full: the kernel drops the SYN, the connect hangs."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        origin = Origin.from_url(f"http://127.0.0.1:{listener.getsockname()[1]}")
        forwarder = await upstreams.forwarder(connect_timeout=0.2)
        with pytest.raises(UpstreamTimeout):
            await forwarder.open(origin, "GET", b"/", [], None)
