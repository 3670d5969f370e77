"""The upstream client through the real proxy (uvicorn in front, the ``Proxy`` app): what a
client sees of a misbehaving upstream, 100-continue end to end, a stale keep-alive, TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.pki import make_pki
from tests.support.proxy import GatewayFactory
from tests.support.upstreams import (
    OK_2,
    PROMPT,
    ClosesOnReuse,
    Handler,
    RawUpstream,
    Upstreams,
    read_request,
    replies,
)


def route(upstream: str, extra: str = "") -> str:
    return f'[[routes]]\nname = "raw"\npath = "/"\npublic = true\nupstream = "{upstream}"\n{extra}'


def url(up: RawUpstream) -> str:
    return f"http://127.0.0.1:{up.port}"


async def exchange(port: int, head: bytes) -> tuple[bytes, bytes]:
    """Send a request exactly as written; return the response head and what followed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    try:
        async with asyncio.timeout(PROMPT):
            response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    response_head, _, rest = response.partition(b"\r\n\r\n")
    return response_head, rest


async def test_slow_loris_headers_end_at_the_routes_timeout(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    """A head that trickles in forever, a byte at a time, well under 64 KiB: the exchange's
    deadline ends it, and the connection is dropped."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.02)  # the trickle is the behaviour under test

    up = await upstreams.start(trickle)
    gw = await gateway(route(url(up), "timeout = 0.3\n"))
    response = await gw.client.get("/slow")
    assert response.status_code == 504
    await up.until(lambda: up.closed == 1)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", id="huge-head"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
            id="length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            id="two-lengths",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-A: 1\x00\r\n\r\n", id="nul-in-value"),
    ],
)
async def test_a_confusing_upstream_is_502_to_the_client(
    gateway: GatewayFactory, upstreams: Upstreams, answer: bytes
) -> None:
    up = await upstreams.start(replies(answer))
    gw = await gateway(route(url(up)))
    response = await gw.client.get("/x")
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"


async def test_a_bad_chunk_mid_body_aborts_the_clients_response(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    up = await upstreams.start(
        replies(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n")
    )
    gw = await gateway(route(url(up)))
    with pytest.raises(httpx.RemoteProtocolError):
        await gw.client.get("/x")


async def test_bytes_after_a_204_never_reach_the_client(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    up = await upstreams.start(replies(b"HTTP/1.1 204 No Content\r\n\r\nsmuggled"))
    gw = await gateway(route(url(up)))
    for _ in range(2):
        response = await gw.client.get("/x")
        assert (response.status_code, response.content) == (204, b"")
    assert up.accepted == 2  # the tainted connection was not reused


async def test_head_with_content_length_and_no_body(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    up = await upstreams.start(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"))
    gw = await gateway(route(url(up)))
    for _ in range(2):
        response = await gw.client.head("/x")
        assert (response.status_code, response.headers["content-length"]) == (200, "1234")
    assert up.accepted == 1


async def test_a_stale_keep_alive_is_retried_for_get(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    upstream = ClosesOnReuse(answered=2)
    up = await upstreams.start(upstream)
    gw = await gateway(route(url(up)))
    assert (await gw.client.get("/one")).status_code == 200
    assert (await gw.client.get("/two")).status_code == 200
    assert (up.accepted, upstream.requests) == (2, 3)


async def test_a_stale_keep_alive_is_not_retried_for_post(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    upstream = ClosesOnReuse(answered=2)
    up = await upstreams.start(upstream)
    gw = await gateway(route(url(up)))
    assert (await gw.client.get("/one")).status_code == 200
    assert (await gw.client.post("/two")).status_code == 502
    assert (up.accepted, upstream.requests) == (1, 2)


# --- 100-continue and early answers, end to end ----------------------------------------------

PUT_WITH_EXPECT = (
    b"PUT /upload HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\n"
    b"Content-Length: 4\r\nConnection: close\r\n\r\n"
)


async def test_100_continue_passes_through(gateway: GatewayFactory, upstreams: Upstreams) -> None:
    async def continue_then_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"\r\nexpect: 100-continue\r\n" in head.lower()
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(4)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + body)
        await reader.read()

    up = await upstreams.start(continue_then_answer)
    gw = await gateway(route(url(up)))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(PUT_WITH_EXPECT)
        async with asyncio.timeout(PROMPT):
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim.startswith(b"HTTP/1.1 100")
            writer.write(b"data")
            final = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    assert final.startswith(b"HTTP/1.1 200") and final.endswith(b"\r\n\r\ndata")


async def test_an_upstream_refusing_the_expectation_answers_before_any_body(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
        await reader.read()

    up = await upstreams.start(refuse)
    gw = await gateway(route(url(up)))
    head, _ = await exchange(gw.port, PUT_WITH_EXPECT)  # the client never sends its body
    assert head.startswith(b"HTTP/1.1 417")


async def test_an_early_413_reaches_a_client_still_uploading(
    gateway: GatewayFactory, upstreams: Upstreams
) -> None:
    async def too_large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
        await reader.read()

    up = await upstreams.start(too_large)
    gw = await gateway(route(url(up)))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10000000\r\n\r\n")
        writer.write(b"x" * 1024)  # 1 KiB of 10 MB, and no more for now
        async with asyncio.timeout(PROMPT):
            response_head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()
    assert response_head.startswith(b"HTTP/1.1 413")
    await up.until(lambda: up.closed == 1)


# --- TLS ---------------------------------------------------------------------------------


def answers_ok() -> Handler:
    return replies(OK_2)


@pytest.mark.parametrize("with_ca", [True, False])
async def test_an_https_upstream_through_the_proxy(
    gateway: GatewayFactory, upstreams: Upstreams, tmp_path: Path, with_ca: bool
) -> None:
    ca_file, server, offered = make_pki(tmp_path, ("localhost",))
    up = await upstreams.start(answers_ok(), tls=server)
    extra = f'tls_ca = "{ca_file}"\n' if with_ca else ""
    gw = await gateway(route(f"https://localhost:{up.port}", extra))
    response = await gw.client.get("/x")
    assert response.status_code == (200 if with_ca else 502)
    assert offered == ["localhost"]
