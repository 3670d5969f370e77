"""Raw upstreams for the upstream client's tests: socket servers on 127.0.0.1 running one
scenario each, the forwarders that talk to them, and helpers to read and answer requests."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from types import TracebackType

from gateway.config import PoolConfig
from gateway.proxy.forwarder import Forwarder, Origin, UpstreamResponse

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: generous bound for anything that should happen at once (a hang fails instead of blocking)
PROMPT = 5


class RawUpstream:
    """A socket server running ``handle`` per connection, counting connections as it goes."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.accepted = 0
        self.closed = 0
        self.max_open = 0
        self.origin: Origin
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def open(self) -> int:
        return self.accepted - self.closed

    async def start(self, tls: ssl.SSLContext | None = None) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        self.origin = Origin.from_url(f"http://127.0.0.1:{port}")
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (at most ``PROMPT`` seconds) until ``condition()`` holds."""
        async with asyncio.timeout(PROMPT):
            while not condition():
                changed = self._changed
                await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.accepted += 1
        self.max_open = max(self.max_open, self.open)
        self._notify()
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self.closed += 1
            self._notify()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class Upstreams:
    """``await upstreams.start(handle)``: raw upstreams and forwarders, all closed on exit."""

    def __init__(self) -> None:
        self._servers: list[RawUpstream] = []
        self._forwarders: list[Forwarder] = []

    async def start(self, handle: Handler, tls: ssl.SSLContext | None = None) -> RawUpstream:
        server = await RawUpstream(handle).start(tls)
        self._servers.append(server)
        return server

    async def forwarder(
        self, connect_timeout: float = 2, pool: PoolConfig | None = None
    ) -> Forwarder:
        forwarder = Forwarder(connect_timeout=connect_timeout, pool=pool)
        await forwarder.start()
        self._forwarders.append(forwarder)
        return forwarder

    async def __aenter__(self) -> Upstreams:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for forwarder in self._forwarders:
            await forwarder.close()
        for server in self._servers:
            await server.stop()


_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)")


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request as sent: its head, and its body de-chunked (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if b"\r\ntransfer-encoding: chunked\r\n" in lower:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return head, body
    length = _LENGTH.search(lower)
    return head, await reader.readexactly(int(length[1])) if length else b""


def replies(response: bytes, *, close: bool = False) -> Handler:
    """Answer every request on a connection with ``response``; with ``close``, only one."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(response)
            await writer.drain()
            if close:
                return

    return handle


async def read_body(response: UpstreamResponse) -> bytes:
    chunks = [chunk async for chunk in response.chunks()]
    assert response.at_eof()
    return b"".join(chunks)


async def fetch(
    forwarder: Forwarder,
    origin: Origin,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: AsyncIterable[bytes] | None = None,
    target: bytes = b"/",
) -> tuple[UpstreamResponse, bytes]:
    """One whole exchange: the response (closed, so back in the pool if reusable) and body."""
    response = await forwarder.open(origin, method, target, headers or [], body)
    try:
        return response, await read_body(response)
    finally:
        response.close()


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


#: a small complete response
OK_2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ClosesOnReuse:
    """Answers one request per connection, ``answered`` in all; closes a connection on any
    other request without answering it (a keep-alive timeout racing the request)."""

    def __init__(self, answered: int) -> None:
        self.answered = answered
        self.answers = 0
        self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = False
        while True:
            await read_request(reader)
            self.requests += 1
            if served or self.answers == self.answered:
                return
            served = True
            self.answers += 1
            writer.write(OK_2)
            await writer.drain()
