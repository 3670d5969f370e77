"""The upstream client against real, misbehaving upstreams: RFC 9112 framing both ways.

Every upstream is a raw asyncio socket server on 127.0.0.1 with one scenario; the tests call
``Forwarder`` directly; the raw upstreams and helpers are in ``tests/support/upstreams.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

import pytest

from gateway.errors import UpstreamUnavailable
from tests.support.upstreams import (
    OK_2,
    PROMPT,
    Handler,
    Upstreams,
    fetch,
    pieces,
    read_request,
    replies,
)

# --- the request ---------------------------------------------------------------------------


async def test_the_head_is_request_line_then_host_then_the_fields_in_order(
    upstreams: Upstreams,
) -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        seen.append(head)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    up = await upstreams.start(record)
    forwarder = await upstreams.forwarder()
    headers = [(b"x-one", b"1"), (b"accept", b"*/*"), (b"x-one", b"2")]
    await fetch(forwarder, up.origin, "GET", headers, target=b"/a/b%20c?q=1&r")
    assert seen == [
        b"GET /a/b%20c?q=1&r HTTP/1.1\r\nHost: 127.0.0.1:" + str(up.port).encode() + b"\r\n"
        b"x-one: 1\r\naccept: */*\r\nx-one: 2\r\n\r\n"
    ]


@pytest.mark.parametrize(
    ("headers", "body", "framing", "received"),
    [
        pytest.param([], None, b"", b"", id="no-body"),
        pytest.param(
            [(b"content-length", b"11")],
            pieces(b"hello", b" ", b"world"),
            b"content-length: 11\r\n",
            b"hello world",
            id="content-length-raw",
        ),
        pytest.param(
            [],
            pieces(b"hello", b"", b" world"),
            b"transfer-encoding: chunked\r\n",
            b"hello world",
            id="chunked",
        ),
    ],
)
async def test_request_framing(
    upstreams: Upstreams,
    headers: list[tuple[bytes, bytes]],
    body: AsyncIterable[bytes] | None,
    framing: bytes,
    received: bytes,
) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    up = await upstreams.start(record)
    forwarder = await upstreams.forwarder()
    _, answer = await fetch(forwarder, up.origin, "POST", headers, body)
    assert answer == b"ok"
    [(head, got)] = seen
    assert head.endswith(b"\r\n" + framing + b"\r\n") and got == received
    assert head.count(b"content-length") + head.count(b"transfer-encoding") == bool(framing)


async def test_chunks_go_on_the_wire_as_sized_chunks(upstreams: Upstreams) -> None:
    raw = bytearray()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw.extend(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    up = await upstreams.start(record)
    await fetch(await upstreams.forwarder(), up.origin, "PUT", [], pieces(b"abc", b"x" * 17))
    assert bytes(raw).endswith(b"\r\n\r\n3\r\nabc\r\n11\r\n" + b"x" * 17 + b"\r\n0\r\n\r\n")


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        pytest.param(b"/", [(b"x-a", b"a\r\nx-injected: 1")], id="crlf-in-value"),
        pytest.param(b"/", [(b"x-a", b"a\nx-injected: 1")], id="lf-in-value"),
        pytest.param(b"/", [(b"x-a", b"a\rb")], id="cr-in-value"),
        pytest.param(b"/", [(b"x-a", b"a\x00b")], id="nul-in-value"),
        pytest.param(b"/", [(b"x-a\r\nx-b", b"1")], id="crlf-in-name"),
        pytest.param(b"/ HTTP/1.1\r\nx: y", [], id="crlf-in-target"),
        pytest.param(b"/a b", [], id="space-in-target"),
        pytest.param(b"/", [(b"host", b"evil.test")], id="second-host"),
        pytest.param(b"/", [(b"transfer-encoding", b"chunked")], id="caller-framing"),
        pytest.param(b"/", [(b"content-length", b"-1")], id="negative-length"),
        pytest.param(
            b"/", [(b"content-length", b"1"), (b"content-length", b"2")], id="two-lengths"
        ),
    ],
)
async def test_a_request_that_could_smuggle_is_never_sent(
    upstreams: Upstreams, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    up = await upstreams.start(replies(b"HTTP/1.1 204 No Content\r\n\r\n"))
    forwarder = await upstreams.forwarder()
    with pytest.raises(UpstreamUnavailable):
        await forwarder.open(up.origin, "GET", target, headers, None)
    assert up.accepted == 0


async def test_a_body_that_does_not_match_its_content_length_is_aborted(
    upstreams: Upstreams,
) -> None:
    up = await upstreams.start(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    forwarder = await upstreams.forwarder()
    for declared in (b"3", b"20"):
        with pytest.raises(UpstreamUnavailable):
            await forwarder.open(
                up.origin, "POST", b"/", [(b"content-length", declared)], pieces(b"0123456789")
            )
    await up.until(lambda: up.closed == 2)


# --- the response: accepted framings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "response", "close", "status", "body", "reusable"),
    [
        pytest.param(
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Mixed-Case: Value\r\n\r\nhello",
            False,
            200,
            b"hello",
            True,
            id="content-length",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            False,
            200,
            b"hello world",
            True,
            id="chunked-extension-trailer",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 200 OK\r\n\r\nuntil close",
            True,
            200,
            b"until close",
            False,
            id="close-delimited",
        ),
        pytest.param(
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            False,
            200,
            b"",
            True,
            id="head-with-length",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            False,
            204,
            b"",
            True,
            id="204",
        ),
        pytest.param(
            "GET",
            b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
            False,
            304,
            b"",
            True,
            id="304",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK_2,
            False,
            200,
            b"ok",
            True,
            id="interim-responses-skipped",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            False,
            200,
            b"ok",
            False,
            id="connection-close",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            False,
            200,
            b"ok",
            False,
            id="http-1.0",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 204 No Content\r\n\r\nhello",
            False,
            204,
            b"",
            False,
            id="bytes-after-204",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
            False,
            304,
            b"",
            False,
            id="bytes-after-304",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            False,
            204,
            b"",
            False,
            id="204-announcing-a-body",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            False,
            304,
            b"",
            True,
            id="304-with-the-200s-length",
        ),
        pytest.param(
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            False,
            200,
            b"",
            False,
            id="bytes-after-head",
        ),
        pytest.param(
            "GET",
            OK_2 + b"HTTP/1.1 200 OK\r\n",
            False,
            200,
            b"ok",
            False,
            id="bytes-after-body",
        ),
    ],
)
async def test_response_framing(
    upstreams: Upstreams,
    method: str,
    response: bytes,
    close: bool,
    status: int,
    body: bytes,
    reusable: bool,
) -> None:
    up = await upstreams.start(replies(response, close=close))
    forwarder = await upstreams.forwarder()
    for _ in range(2):
        answer, received = await fetch(forwarder, up.origin, method)
        assert (answer.status, received) == (status, body)
        assert all(name == name.lower() for name, _ in answer.headers)
        assert b"x-trailer" not in dict(answer.headers) and b"link" not in dict(answer.headers)
    assert up.accepted == (1 if reusable else 2)
    if status == 200 and b"X-Mixed-Case" in response:
        assert (b"x-mixed-case", b"Value") in answer.headers


def big_head(size: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"X-Big: %s\r\n" % (b"a" * size) + b"Content-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            id="chunked-and-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            id="conflicting-lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            id="repeated-length",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", id="length-list"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", id="negative-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok", id="word-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", id="gzip-coding"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            id="gzip-then-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="chunked-twice",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
            id="chunked-and-empty",
        ),
        pytest.param(b"NOT HTTP\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 20 OK\r\n\r\n", id="two-digit-status"),
        pytest.param(b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", id="status-000"),
        pytest.param(b"HTTP/1.1 999 Nine\r\nContent-Length: 0\r\n\r\n", id="status-999"),
        pytest.param(b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", id="http-2.0"),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: upgrade\r\n\r\n",
            id="101",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n", id="cr-in-value"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", id="nul-in-value"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 0\r\n\r\n", id="lf-in-value"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", id="obs-fold"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 0\r\n\r\n", id="space-before-colon"
        ),
        pytest.param(big_head(65 * 1024), id="head-over-64KiB"),
    ],
)
async def test_a_response_that_could_confuse_the_client_is_502(
    upstreams: Upstreams, response: bytes
) -> None:
    up = await upstreams.start(replies(response))
    forwarder = await upstreams.forwarder()
    with pytest.raises(UpstreamUnavailable) as caught:
        await forwarder.open(up.origin, "GET", b"/", [], None)
    assert caught.value.__cause__ is not None
    await up.until(lambda: up.closed == 1)  # never pooled


async def test_a_head_block_trickling_past_64KiB_is_502(upstreams: Upstreams) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(70):  # 70 fields of 1 KiB, each in a write of its own
            writer.write(b"X-F%d: %s\r\n" % (n, b"a" * 1024))
            await writer.drain()
        await reader.read()

    up = await upstreams.start(trickle)
    forwarder = await upstreams.forwarder()
    with pytest.raises(UpstreamUnavailable):
        async with asyncio.timeout(PROMPT):
            await forwarder.open(up.origin, "GET", b"/", [], None)


async def test_a_head_block_just_under_64KiB_passes(upstreams: Upstreams) -> None:
    up = await upstreams.start(replies(big_head(63 * 1024)))
    answer, _ = await fetch(await upstreams.forwarder(), up.origin)
    assert answer.status == 200


def cut_off(head_and_part: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head_and_part)
        await writer.drain()

    return handle


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", id="length-short"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            id="chunked-without-last-chunk",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
            id="chunked-bad-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
            id="chunk-longer-than-its-size",
        ),
    ],
)
async def test_a_truncated_body_fails_the_stream_instead_of_ending_it(
    upstreams: Upstreams, sent: bytes
) -> None:
    up = await upstreams.start(cut_off(sent))
    forwarder = await upstreams.forwarder()
    response = await forwarder.open(up.origin, "GET", b"/", [], None)
    received = b""
    with pytest.raises(UpstreamUnavailable) as caught:
        async for chunk in response.chunks():
            received += chunk
    assert received == b"hello" and not response.at_eof()
    assert caught.value.__cause__ is not None
    response.close()
    await up.until(lambda: up.closed == 1)
