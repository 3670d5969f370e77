"""The proxy's tests' helpers: the test issuer and audience, access-token claims, the demo's
echo as an aiohttp app, the gateway under test as the fixtures start it, and raw HTTP/1.1
requests and responses (no client-side normalisation)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web

from gateway.demo.echo import describe, event, event_params
from gateway.proxy.app import Proxy
from gateway.proxy.decisions import DecisionEndpoint

ISSUER = "https://issuer.test"


AUDIENCE = "https://gateway.test"


CONFIG_HEAD = f"""
issuer = "{ISSUER}"
[tokens]
audience = "{AUDIENCE}"
"""


def claims(**overrides: Any) -> dict[str, Any]:
    """RFC 9068 access-token claims for user alice, overridable (None removes a claim)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "client_id": "app-1",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        "scope": "",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def echo_app() -> web.Application:
    """The demo's echo as an aiohttp application, for the fixtures that serve aiohttp apps."""

    async def handle(request: web.Request) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        if request.path.endswith("/events"):
            try:
                count, interval = event_params(query)
            except ValueError:
                raise web.HTTPBadRequest(text="count and interval must be numbers") from None
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            for n in range(1, count + 1):
                await response.write(event(n, request.path))
                if n < count:
                    await asyncio.sleep(interval)
            await response.write_eof()
            return response
        body = await request.read()
        headers = [[name, value] for name, value in request.headers.items()]
        return web.Response(
            body=describe(request.method, path, query, headers, len(body)),
            content_type="application/json",
            charset="utf-8",
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@dataclass
class Gateway:
    proxy: Proxy
    decisions: DecisionEndpoint
    port: int
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


GatewayFactory = Callable[..., Awaitable[Gateway]]


def upstream_headers(response: httpx.Response) -> list[tuple[str, str]]:
    """The headers the echo upstream received, as (lower-case name, value)."""
    return [(name.lower(), value) for name, value in response.json()["headers"]]


def upstream_header(response: httpx.Response, name: str) -> list[str]:
    return [v for n, v in upstream_headers(response) if n == name.lower()]


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]


async def raw_request(
    port: int, target: str, headers: str = "", method: str = "GET", host: str = "gw.test"
) -> RawResponse:
    """Send a request line exactly as written (no client-side normalisation); read to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n"
    writer.write(head.encode("latin-1"))
    data = await reader.read(-1)
    writer.close()
    await writer.wait_closed()
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    pairs = [line.split(":", 1) for line in lines]
    return RawResponse(
        status=int(status_line.split()[1]),
        headers=[(n.strip().lower(), v.strip()) for n, v in pairs],
        body=body,
    )


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")
