"""The upstream client's flow: 100-continue, early responses, backpressure both ways, and
cancellation at any await point dropping the connection instead of pooling it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.config import PoolConfig
from gateway.errors import UpstreamUnavailable
from gateway.proxy.http1.connection import EXPECT_TIMEOUT
from tests.support.upstreams import OK_2, PROMPT, Upstreams, fetch, read_request, replies

MiB = 1024 * 1024
#: what the kernel's socket buffers and ours may hold between a stalled reader and a writer
IN_FLIGHT = 32 * MiB
OFFERED = 128 * MiB
#: the time a stalled side is given to show it does not run ahead: the behaviour under test
#: is that nothing happens, which no event can signal
STALL = 0.3
EXPECT = [(b"expect", b"100-continue"), (b"content-length", b"4")]


class Body:
    """A request body that records when it is pulled, and can hang after its first chunk."""

    def __init__(self, *chunks: bytes, hang: bool = False) -> None:
        self.chunks = chunks
        self.pulls = 0
        self.hang = hang
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.chunks:
                self.pulls += 1
                yield chunk
            if self.hang:
                await asyncio.Event().wait()
        finally:
            self.closed = True


# --- Expect: 100-continue (RFC 9110 §10.1.1) ------------------------------------------------


async def test_the_body_waits_for_100_continue(upstreams: Upstreams) -> None:
    pulls_before_100: list[int] = []
    body = Body(b"data")

    async def continue_then_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        pulls_before_100.append(body.pulls)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert await reader.readexactly(4) == b"data"
        writer.write(OK_2)
        await reader.read()

    up = await upstreams.start(continue_then_answer)
    answer, received = await fetch(await upstreams.forwarder(), up.origin, "PUT", EXPECT, body)
    assert (answer.status, received, pulls_before_100) == (200, b"ok", [0])


@pytest.mark.parametrize("status", [b"417 Expectation Failed", b"401 Unauthorized"])
async def test_a_final_answer_instead_of_100_means_the_body_is_never_sent(
    upstreams: Upstreams, status: bytes
) -> None:
    body = Body(b"data")

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await reader.read()

    up = await upstreams.start(refuse)
    answer, _ = await fetch(await upstreams.forwarder(), up.origin, "PUT", EXPECT, body)
    assert answer.status == int(status[:3]) and body.pulls == 0
    await up.until(lambda: up.closed == 1)  # the request was never finished: not reusable


async def test_an_upstream_ignoring_expect_gets_the_body_after_a_short_wait(
    upstreams: Upstreams,
) -> None:
    up = await upstreams.start(replies(OK_2))
    started = time.monotonic()
    answer, _ = await fetch(await upstreams.forwarder(), up.origin, "PUT", EXPECT, Body(b"data"))
    assert answer.status == 200
    assert EXPECT_TIMEOUT * 0.9 <= time.monotonic() - started < EXPECT_TIMEOUT + PROMPT


async def test_an_early_response_stops_the_upload_and_ends_the_connection(
    upstreams: Upstreams,
) -> None:
    """An upstream refusing a large upload (413) before reading it: the answer comes back at
    once, though the client's body is still streaming (here: stuck after one chunk)."""
    body = Body(b"first chunk", hang=True)

    async def too_large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
        await reader.read()

    up = await upstreams.start(too_large)
    forwarder = await upstreams.forwarder()
    async with asyncio.timeout(PROMPT):
        answer, received = await fetch(forwarder, up.origin, "POST", [], body)
    assert (answer.status, received) == (413, b"too big!")
    await up.until(lambda: up.closed == 1)
    assert (body.pulls, body.closed) == (1, True)


# --- backpressure ------------------------------------------------------------------------


async def test_a_stalled_upstream_stops_the_body_being_pulled(upstreams: Upstreams) -> None:
    release = asyncio.Event()
    received = 0
    block = b"u" * MiB
    pulled = 0

    async def stalls_then_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        while received < OFFERED:
            received += len(await reader.read(MiB))
        writer.write(OK_2)
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < OFFERED:
            pulled += len(block)
            yield block

    up = await upstreams.start(stalls_then_reads)
    forwarder = await upstreams.forwarder()
    length = [(b"content-length", b"%d" % OFFERED)]
    opening = asyncio.ensure_future(forwarder.open(up.origin, "POST", b"/", length, body()))
    await asyncio.sleep(STALL)
    assert pulled < IN_FLIGHT
    release.set()
    async with asyncio.timeout(PROMPT):
        answer = await opening
    answer.close()
    assert (answer.status, received) == (200, OFFERED)


async def test_a_slow_consumer_stops_the_upstream_being_read(upstreams: Upstreams) -> None:
    sent = 0

    async def floods(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % OFFERED)
        block = b"d" * MiB
        while sent < OFFERED:
            writer.write(block)
            await writer.drain()
            sent += len(block)
        await reader.read()

    up = await upstreams.start(floods)
    response = await (await upstreams.forwarder()).open(up.origin, "GET", b"/", [], None)
    await asyncio.sleep(STALL)
    assert sent < IN_FLIGHT
    received = 0
    async with asyncio.timeout(PROMPT):
        async for chunk in response.chunks():
            received += len(chunk)
    response.close()
    assert received == OFFERED


# --- cancellation (the exchange's deadlines cancel the client) ------------------------------


async def test_cancelled_while_waiting_for_the_head_the_connection_is_dropped(
    upstreams: Upstreams,
) -> None:
    asked = asyncio.Event()
    answered = 0

    async def answers_the_second(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal answered
        await read_request(reader)
        if not asked.is_set():
            asked.set()
            await reader.read()
            return
        answered += 1
        writer.write(OK_2)
        await reader.read()

    up = await upstreams.start(answers_the_second)
    # one connection allowed: a leaked slot would make the second request wait forever
    forwarder = await upstreams.forwarder(pool=PoolConfig(max_connections_per_origin=1))
    opening = asyncio.ensure_future(forwarder.open(up.origin, "GET", b"/", [], None))
    await asyncio.wait_for(asked.wait(), PROMPT)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    await up.until(lambda: up.closed == 1)
    async with asyncio.timeout(PROMPT):
        answer, received = await fetch(forwarder, up.origin)
    assert (answer.status, received, up.accepted, answered) == (200, b"ok", 2, 1)


async def test_cancelled_mid_upload_the_connection_is_dropped(upstreams: Upstreams) -> None:
    body = Body(b"first", hang=True)
    got_first = asyncio.Event()

    async def reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"first\r\n")
        got_first.set()
        await reader.read()

    up = await upstreams.start(reads)
    forwarder = await upstreams.forwarder()
    opening = asyncio.ensure_future(forwarder.open(up.origin, "POST", b"/", [], body))
    await asyncio.wait_for(got_first.wait(), PROMPT)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    await up.until(lambda: up.closed == 1)


async def test_cancelled_mid_body_the_connection_never_goes_back_to_the_pool(
    upstreams: Upstreams,
) -> None:
    async def half_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
            await writer.drain()

    up = await upstreams.start(half_then_wait)
    forwarder = await upstreams.forwarder()
    response = await forwarder.open(up.origin, "GET", b"/", [], None)
    chunks = response.chunks()
    assert await anext(chunks) == b"hello"
    waiting = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0)  # let it start waiting for the rest of the body
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    response.close()  # what the exchange does next: a no-op now
    await up.until(lambda: up.closed == 1)
    second = await forwarder.open(up.origin, "GET", b"/", [], None)
    second.close()
    assert up.accepted == 2


async def test_closing_the_response_from_elsewhere_ends_a_waiting_consumer(
    upstreams: Upstreams,
) -> None:
    """The exchange closes the response when the client leaves mid-download."""
    up = await upstreams.start(
        replies(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    )
    response = await (await upstreams.forwarder()).open(up.origin, "GET", b"/", [], None)
    chunks = response.chunks()
    assert await anext(chunks) == b"hello"
    waiting = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0)
    response.close()
    with pytest.raises(UpstreamUnavailable):
        await asyncio.wait_for(waiting, PROMPT)
    await up.until(lambda: up.closed == 1)
