"""The upstream's response: status and headers at once, then the body as it arrives.

The connection's parser feeds body bytes in (``feed``/``finish``/``fail``); the exchange
takes them out with ``async for chunk in response.chunks()``. What arrived since the last
take comes out at once: small pieces joined into one chunk (a server-sent event is passed on
the moment it arrives, a burst of small chunks in one send), large ones one by one as they
were read, never copied. The buffer is bounded: past ``HIGH_WATER`` the connection stops
reading until the consumer has taken it down to ``LOW_WATER``.

``close()`` decides the connection's fate (RFC 9112 §9.3): back to the pool only when the
whole body was read and the connection may persist; otherwise it is dropped, which also
ends a consumer still waiting in ``__anext__`` (a watcher closes the response when the
client leaves mid-download).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway.errors import UpstreamUnavailable
from gateway.proxy.http1.flow import FlowControl

if TYPE_CHECKING:
    from gateway.proxy.http1.connection import Connection

#: bytes buffered before the connection stops reading from the upstream, and below which
#: it reads again
HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
#: pieces buffered up to this size in all come out joined (many small chunks, one send);
#: larger ones come out one by one, never copied
JOIN_LIMIT = 64 * 1024


class UpstreamResponse:
    __slots__ = (
        "_buffer",
        "_complete",
        "_conn",
        "_error",
        "_flow",
        "_loop",
        "_size",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(
        self,
        conn: Connection,
        flow: FlowControl,
        loop: asyncio.AbstractEventLoop,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.status = status
        #: (lower-case name, value as received), in order; trailers are not included
        self.headers = headers
        self._conn: Connection | None = conn
        self._flow = flow
        self._loop = loop
        self._buffer: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._error: BaseException | None = None

    # --- fed by the connection ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER:
            self._flow.pause_reading()
        self._wake()

    def finish(self) -> None:
        """The body is complete (its framing says so, or a close-delimited body hit EOF)."""
        self._complete = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The body broke off (reset, EOF before its end, a framing error)."""
        if not self._complete and self._error is None:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- the seam ------------------------------------------------------------------------

    def chunks(self) -> UpstreamResponse:
        """The body, chunk by chunk as the upstream sends it (``UpstreamUnavailable`` if the
        upstream breaks off before its end)."""
        return self

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        buffer = self._buffer
        while not buffer:
            if self._complete:
                raise StopAsyncIteration
            if self._error is not None:
                raise UpstreamUnavailable("the upstream broke off its response") from self._error
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            except BaseException:
                self.close()  # cancelled (the exchange's deadline): the connection is spent
                raise
        if len(buffer) == 1:
            data = buffer.pop()
        elif self._size <= JOIN_LIMIT:
            data = b"".join(buffer)
            buffer.clear()
        else:
            data = buffer.pop(0)
        self._size -= len(data)
        if self._flow.read_paused and self._size <= LOW_WATER:
            self._flow.resume_reading()
        return data

    def at_eof(self) -> bool:
        """Whether the whole body has been handed out."""
        return self._complete and not self._buffer

    def close(self) -> None:
        """Hand the connection back (body read whole, reusable) or drop it; idempotent."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self.at_eof():
            if conn.reusable():
                conn.pool.release(conn)
                return
        else:
            # whatever is left is never handed out: a consumer still iterating gets an error
            self._buffer.clear()
            self._complete = False
            if self._error is None:
                self._error = ConnectionAbortedError("the response was closed before its end")
            self._wake()
        conn.pool.discard(conn)
