"""The upstream's response: status and headers at once, then the body as it arrives.

The connection's parser feeds body bytes in (``feed``/``finish``/``fail``); the caller takes
them out with ``async for chunk in response.chunks()``. What arrived since the last take comes
out at once: small pieces joined into one chunk (a server-sent event is passed on the moment it
arrives, a burst of small chunks in one send), large ones one by one as they were read, never
copied. The buffer is bounded: past ``HIGH_WATER`` the connection stops reading until the
consumer has taken it down to ``LOW_WATER``. A body that breaks off raises ``IncompleteBody``
(``broken_off``: a caller's subclass, which the pool builds, may raise its own error instead).

``close()`` ends the response: the connection it came on (its ``Source``) decides what
becomes of it, back to the pool only when the whole body was read and it may persist (RFC 9112
§9.3). Closing early also ends a consumer still waiting in ``__anext__`` (a watcher closes the
response when the client leaves mid-download).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.proxy.http1.errors import IncompleteBody
from gateway.proxy.http1.flow import FlowControl


class Source(Protocol):
    """Where a response came from (a ``Connection``), told once the response is closed."""

    def response_closed(self, whole: bool) -> None:
        """``whole``: the body was read to its end."""


#: bytes buffered before the connection stops reading from the upstream, and below which
#: it reads again
HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
#: pieces buffered up to this size in all come out joined (many small chunks, one send);
#: larger ones come out one by one, never copied
JOIN_LIMIT = 64 * 1024


class Response:
    __slots__ = (
        "_buffer",
        "_complete",
        "_error",
        "_flow",
        "_loop",
        "_size",
        "_source",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(
        self,
        source: Source,
        flow: FlowControl,
        loop: asyncio.AbstractEventLoop,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.status = status
        #: (lower-case name, value as received), in order; trailers are not included
        self.headers = headers
        self._source: Source | None = source
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

    def chunks(self) -> Response:
        """The body, chunk by chunk as the upstream sends it (``IncompleteBody`` if the
        upstream breaks off before its end)."""
        return self

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        buffer = self._buffer
        while not buffer:
            if self._complete:
                raise StopAsyncIteration
            if self._error is not None:
                raise self.broken_off(self._error)
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

    def broken_off(self, reason: BaseException) -> Exception:
        """What a consumer gets once the body broke off for ``reason``: ``IncompleteBody``,
        ``reason`` its cause. A caller's subclass may say it in its own terms instead."""
        error = IncompleteBody(str(reason))
        error.__cause__ = reason
        return error

    def at_eof(self) -> bool:
        """Whether the whole body has been handed out."""
        return self._complete and not self._buffer

    def close(self) -> None:
        """Hand the connection back (body read whole, reusable) or drop it; idempotent."""
        source = self._source
        if source is None:
            return
        self._source = None
        whole = self.at_eof()
        if not whole:
            # whatever is left is never handed out: a consumer still iterating gets an error
            self._buffer.clear()
            self._complete = False
            if self._error is None:
                self._error = ConnectionAbortedError("the response was closed before its end")
            self._wake()
        source.response_closed(whole)
