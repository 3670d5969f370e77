"""Fixtures chained keys -> validator -> config -> upstreams -> gateway -> client.

Every server is real and listens on 127.0.0.1: upstreams are aiohttp.web apps (or raw
sockets where a fault must be injected), the gateway is the ``Proxy`` under uvicorn.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web

from gateway.accesslog import AccessLog
from gateway.config import Config, RouteConfig, load_config
from gateway.demo.echo import describe, event, event_params
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.validator import BearerValidator
from gateway.keys import KeyRing, create_key
from gateway.proxy.app import Proxy
from gateway.proxy.decisions import DecisionEndpoint, is_decision_path
from gateway.proxy.forwarder import Forwarder
from tests.proxy.upstreams import Upstreams

ISSUER = "https://issuer.test"
AUDIENCE = "https://gateway.test"
CONFIG_HEAD = f"""
issuer = "{ISSUER}"
[tokens]
audience = "{AUDIENCE}"
"""


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    create_key(directory, "RS256")
    return directory


@pytest.fixture
def keyring(keys_dir: Path) -> KeyRing:
    return KeyRing(keys_dir)


@pytest.fixture
def revocations() -> RevocationCache:
    return RevocationCache()


@pytest.fixture
def validator(keyring: KeyRing, revocations: RevocationCache) -> BearerValidator:
    return BearerValidator(keyring, revocations, ISSUER, leeway=0)


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


@pytest.fixture
def mint(keyring: KeyRing) -> Callable[..., str]:
    """``mint(scope="a b", **claims)``: a real signed access token."""

    def mint(scope: str = "", **overrides: Any) -> str:
        return keyring.sign(claims(scope=scope, **overrides))

    return mint


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Config]:
    """Load a config from TOML (issuer and audience are the tests')."""

    def write(body: str) -> Config:
        path = tmp_path / f"gateway-{uuid.uuid4().hex[:8]}.toml"
        path.write_text(CONFIG_HEAD + body)
        return load_config(path)

    return write


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


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """``await serve(app)``: run an aiohttp app on 127.0.0.1, return its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def echo(serve: Callable[[web.Application], Awaitable[str]]) -> str:
    """URL of an upstream that answers with JSON describing the request it received."""
    return await serve(echo_app())


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


@pytest.fixture
async def gateway(
    write_config: Callable[[str], Config], validator: BearerValidator
) -> AsyncIterator[GatewayFactory]:
    """``await gateway(toml, forwarder=, routes=, access_log=)``: the Proxy under uvicorn on
    127.0.0.1, with the decision endpoint at ``/decisions`` (dispatched as ``GatewayApp``
    does)."""
    running: list[tuple[uvicorn.Server, socket.socket, Gateway]] = []

    async def start(
        toml: str,
        forwarder: Forwarder | None = None,
        routes: tuple[RouteConfig, ...] | None = None,
        access_log: AccessLog | None = None,
    ) -> Gateway:
        config = write_config(toml)
        if routes is not None:
            config = dataclasses.replace(config, routes=routes)
        proxy = Proxy(config, validator, forwarder, access_log=access_log)
        decisions = DecisionEndpoint(config, proxy.core)
        await proxy.startup()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            door = decisions if is_decision_path(scope.get("path", "")) else proxy
            await door(scope, receive, send)

        # IPPROTO_TCP: asyncio only sets TCP_NODELAY on sockets that say they are TCP
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        server_config = uvicorn.Config(
            app, lifespan="off", proxy_headers=False, log_config=None, access_log=False
        )
        server_config.load()
        server = uvicorn.Server(server_config)
        server.lifespan = server_config.lifespan_class(server_config)
        await server.startup(sockets=[sock])
        port = sock.getsockname()[1]
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")
        gw = Gateway(proxy, decisions, port, client)
        running.append((server, sock, gw))
        return gw

    yield start
    for server, sock, gw in running:
        await gw.client.aclose()
        # Server.shutdown() always sleeps 0.1 s; every exchange is over, so close at once
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        sock.close()
        await gw.proxy.shutdown()


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


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    """``await raw_upstream(handle)``: a socket-level upstream for fault injection."""
    servers: list[asyncio.Server] = []

    async def start(handle: RawHandler) -> str:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    """Raw-socket upstreams and forwarders for the upstream client's tests, closed after."""
    async with Upstreams() as started:
        yield started
