"""Upstream faults: 502 before headers, 504 on late headers, an aborted response mid-body;
never a traceback to the client; no cookies shared between clients."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from gateway.proxy import exchange
from gateway.proxy.forwarder import Forwarder, UpstreamResponse
from tests.support.proxy import GatewayFactory, RawHandler, read_request_head

Serve = Callable[[web.Application], Awaitable[str]]
RawUpstream = Callable[[RawHandler], Awaitable[str]]


def route(upstream: str, extra: str = "") -> str:
    return (
        f'[[routes]]\nname = "orders"\npath = "/"\npublic = true\nupstream = "{upstream}"\n{extra}'
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.proxy"]
    assert any("route 'orders'" in m and text in m for m in messages), messages


async def test_refused_connection_is_502(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await gateway(route(f"http://127.0.0.1:{closed_port()}"))
    response = await gw.client.get("/orders")
    assert response.status_code == 502
    assert response.json() == {
        "error": "bad_gateway",
        "error_description": "the upstream service could not be reached",
    }
    assert_logged(caplog, "could not be reached")


async def reset_before_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request_head(reader)
    writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    writer.close()


async def close_before_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request_head(reader)
    writer.close()


async def garbage_status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request_head(reader)
    writer.write(b"NOT HTTP\r\n\r\n")
    writer.close()


@pytest.mark.parametrize(
    "handle",
    [
        pytest.param(reset_before_headers, id="reset"),
        pytest.param(close_before_headers, id="closed"),
        pytest.param(garbage_status, id="not-http"),
    ],
)
async def test_upstream_failing_before_headers_is_502(
    gateway: GatewayFactory, raw_upstream: RawUpstream, handle: RawHandler
) -> None:
    gw = await gateway(route(await raw_upstream(handle)))
    response = await gw.client.post("/orders", content=b"x")
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request_head(reader)
    await reader.read()  # until the gateway gives up and closes
    writer.close()


async def test_late_headers_are_504(
    gateway: GatewayFactory, raw_upstream: RawUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await gateway(route(await raw_upstream(never_answer), "timeout = 0.2\n"))
    response = await gw.client.get("/orders")
    assert response.status_code == 504
    assert response.json()["error"] == "gateway_timeout"
    assert_logged(caplog, "did not answer in time")


def dies_mid_body(head: bytes, first: bytes) -> RawHandler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(head + first)
        await writer.drain()
        writer.close()

    return handle


def stalls_mid_body(head: bytes, first: bytes) -> RawHandler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(head + first)
        await reader.read()
        writer.close()

    return handle


SIZED = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("handle", "logged"),
    [
        pytest.param(dies_mid_body(SIZED, b"x" * 10), "broke off", id="sized-reset"),
        pytest.param(dies_mid_body(CHUNKED, b"a\r\n0123456789\r\n"), "broke off", id="chunked"),
        pytest.param(stalls_mid_body(SIZED, b"x" * 10), "stalled", id="idle-timeout"),
    ],
)
async def test_upstream_dying_mid_body_aborts_the_response(
    gateway: GatewayFactory,
    raw_upstream: RawUpstream,
    caplog: pytest.LogCaptureFixture,
    handle: RawHandler,
    logged: str,
) -> None:
    gw = await gateway("[proxy]\nidle_timeout = 0.2\n" + route(await raw_upstream(handle)))
    with pytest.raises(httpx.RemoteProtocolError):
        await gw.client.get("/orders")
    assert_logged(caplog, logged)


class ExplodingForwarder(Forwarder):
    async def open(self, *args: Any) -> UpstreamResponse:
        raise RuntimeError("internal detail that must not leak")


async def test_unexpected_errors_are_502_without_a_traceback(
    gateway: GatewayFactory, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await gateway(route(echo), forwarder=ExplodingForwarder(connect_timeout=1))
    response = await gw.client.get("/orders")
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"
    assert "internal detail" not in response.text
    assert "Traceback" not in response.text
    assert_logged(caplog, "unexpected error")


async def test_cookies_are_never_shared_between_clients(
    gateway: GatewayFactory, serve: Serve
) -> None:
    async def login(request: web.Request) -> web.Response:
        response = web.json_response({"cookie": request.headers.get("Cookie")})
        response.set_cookie("session", request.query["user"])
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", login)
    gw = await gateway(route(await serve(app)))
    alice = await gw.client.get("/login", params={"user": "alice"})
    assert alice.headers["set-cookie"].startswith("session=alice")
    async with httpx.AsyncClient(base_url=gw.url) as other:
        bob = await other.get("/login", params={"user": "bob"})
    assert bob.json() == {"cookie": None}
    assert bob.headers["set-cookie"].startswith("session=bob")


async def test_client_leaving_mid_download_closes_the_upstream(
    gateway: GatewayFactory, serve: Serve
) -> None:
    upstream_gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        except (ConnectionError, asyncio.CancelledError):
            upstream_gone.set()
            raise

    app = web.Application()
    app.router.add_get("/{tail:.*}", endless)
    gw = await gateway(route(await serve(app)))
    async with gw.client.stream("GET", "/stream") as response:
        chunks: AsyncIterator[bytes] = response.aiter_raw()
        await anext(chunks)
        await anext(chunks)
    async with asyncio.timeout(5):
        await upstream_gone.wait()


async def test_one_late_upstream_times_out_alone(
    gateway: GatewayFactory, raw_upstream: RawUpstream, echo: str
) -> None:
    """Deadlines are swept together: the late request gets its 504 while requests to a live
    upstream in flight meanwhile answer, and no sweep timer outlives the last exchange."""
    gw = await gateway(
        f'[[routes]]\nname = "late"\npath = "/late"\npublic = true\ntimeout = 0.2\n'
        f'upstream = "{await raw_upstream(never_answer)}"\n'
        f'[[routes]]\nname = "live"\npath = "/live"\npublic = true\nupstream = "{echo}"\n'
    )
    late = asyncio.ensure_future(gw.client.get("/late"))
    live = [await gw.client.get(f"/live/{n}") for n in range(5)]
    assert [r.status_code for r in live] == [200] * 5
    assert (await late).status_code == 504
    deadlines = gw.proxy._deadlines
    assert not deadlines._live
    # the sweep that saw the last exchange leave stops without arming another
    await asyncio.sleep(2 * exchange.TICK)
    assert deadlines._handle is None
