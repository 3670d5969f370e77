"""``gateway demo``'s upstream: an echo, in the gateway's process (or a thread of a test's).

It answers every request with JSON showing what reached it (method, path, query, all as
received; headers: so the identity headers the gateway added are visible), and serves
server-sent events (``text/event-stream``, WHATWG HTML §9.2) at any path ending in
``/events``: ``?count=N&interval=SECONDS``. It is a raw ASGI app under uvicorn (header names
arrive lower-cased, as uvicorn hands them over). Under ``gateway demo`` it also serves the
browser client's pages under ``/app/`` (``gateway.demo.browser``), on the same origin as its
redirect URI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from gateway.context import raw_path

MAX_EVENTS = 100

Scope = dict[str, Any]
Receive = Any
Send = Any
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def describe(
    method: str, path: str, query: str, headers: list[list[str]], body_bytes: int
) -> bytes:
    """The echo's answer: what reached the upstream."""
    return json.dumps(
        {
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body_bytes": body_bytes,
        }
    ).encode()


def event(n: int, path: str) -> bytes:
    return f"id: {n}\nevent: tick\ndata: {json.dumps({'n': n, 'path': path})}\n\n".encode()


def event_params(query: str) -> tuple[int, float]:
    """``count`` (capped at ``MAX_EVENTS``) and ``interval``; ``ValueError`` if not numbers."""
    params = parse_qs(query)
    count = min(int(params.get("count", ["5"])[0]), MAX_EVENTS)
    return count, float(params.get("interval", ["1"])[0])


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The echo upstream as a raw ASGI app."""
    if scope["type"] != "http":
        return
    query = scope["query_string"].decode("latin-1")
    if scope["path"].endswith("/events"):
        await _events(scope["path"], query, send)
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    headers = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    path = raw_path(scope).decode("latin-1")
    body = describe(scope["method"], path, query, headers, size)
    await _respond(send, 200, b"application/json; charset=utf-8", body)


async def _events(path: str, query: str, send: Send) -> None:
    try:
        count, interval = event_params(query)
    except ValueError:
        await _respond(
            send, 400, b"text/plain; charset=utf-8", b"count and interval must be numbers"
        )
        return
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for n in range(1, count + 1):
        await send({"type": "http.response.body", "body": event(n, path), "more_body": True})
        if n < count:
            await asyncio.sleep(interval)
    await send({"type": "http.response.body", "body": b""})


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class EchoUpstream:
    url: str
    server: uvicorn.Server
    sock: socket.socket

    async def stop(self) -> None:
        for listener in self.server.servers:
            listener.close()
        for connection in list(self.server.server_state.connections):
            connection.shutdown()
        for listener in self.server.servers:
            await listener.wait_closed()
        self.sock.close()


def with_pages(pages: ASGIApp | None, prefix: str = "/app/") -> ASGIApp:
    """The echo, with ``pages`` answering the paths under ``prefix``."""
    if pages is None:
        return echo

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path.startswith(prefix) or path == prefix.rstrip("/")):
            await pages(scope, receive, send)
        else:
            await echo(scope, receive, send)

    return app


async def start_echo_upstream(
    host: str = "127.0.0.1", port: int = 0, pages: ASGIApp | None = None
) -> EchoUpstream:
    """Serve the echo app (and ``pages`` under ``/app/``) on ``host:port`` (0: any free port)
    in the running event loop."""
    # IPPROTO_TCP: asyncio only sets TCP_NODELAY on sockets that say they are TCP
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        with_pages(pages), lifespan="off", proxy_headers=False, log_config=None, access_log=False
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    return EchoUpstream(url=f"http://{host}:{sock.getsockname()[1]}", server=server, sock=sock)


@contextlib.contextmanager
def echo_upstream_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The echo upstream on an event loop of its own thread, for synchronous callers
    (benchmarks, tests driving real gateway processes). Yields its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="echo-upstream", daemon=True)
    thread.start()
    try:
        starting = asyncio.run_coroutine_threadsafe(start_echo_upstream(host, port), loop)
        upstream = starting.result(10)
        try:
            yield upstream.url
        finally:
            asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
