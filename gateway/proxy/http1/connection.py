"""One HTTP/1.1 connection to an upstream: an asyncio Protocol feeding httptools' parser.

One exchange at a time (no pipelining). ``exchange()`` writes the head, streams the body
(from a task of its own, so a response that arrives early is seen at once), and returns the
``Response`` once its head is in. A fresh ``HttpResponseParser`` per exchange (cheap beside
the exchange) means no parser state ever leaks from one response to the next.
The parser's callbacks record state; refusing a response raises ``ProtocolError`` from a
callback, which stops the parser there.

Framing of the response, RFC 9112 §6.3, in its order:

1. a response to HEAD, 1xx, 204 and 304 have no body (§6.3 ¶1). 1xx responses other than
   101 are interim (RFC 9110 §15.2): skipped, ``100 Continue`` releasing a held body. 101 is
   refused: nothing here speaks another protocol. Bytes after a 204/304 head or after a HEAD
   response are never relayed; they only make the connection unusable, as does a 204 that
   announces a body it must not have;
2. Transfer-Encoding and Content-Length together are refused (§6.3 ¶3: the message "ought
   to be handled as an error"; llhttp refuses them). Transfer-Encoding must be exactly one
   ``chunked``: §6.3 ¶4 makes any other final coding close-delimited, and the field is
   hop-by-hop, so a coding under it would reach the client undeclared. Chunk extensions are
   ignored and trailers dropped (§7.1.1, §7.1.2);
3. Content-Length must be one decimal number (§6.3 ¶5; llhttp refuses signs, lists,
   repeats and overflow). Past the packet holding the head, such a body's bytes are counted
   rather than parsed: each packet goes to the consumer as it came, without a copy;
4. otherwise the body runs until the upstream closes (§6.3 ¶8). httptools cannot be told
   about EOF, so ``connection_lost`` completes such a body on a clean close, and fails every
   other unfinished one: a Content-Length or chunked body cut short is truncated, not done.

Also refused: a status outside 100-599 (RFC 9110 §15), an HTTP version other than 1.x
(§2.3), a header block over ``MAX_HEAD`` (counted as bytes arrive, so a slow-loris head is
bounded in size; the exchange's deadline bounds it in time), and, by llhttp itself, CR, LF,
NUL or other control characters in a field value, obs-fold and malformed chunk sizes.

Persistence, RFC 9112 §9.3: reusable once the response is complete, the request was sent
whole, neither side said ``Connection: close``, the response was not close-delimited and no
stray byte followed it. ``eof_received`` / ``connection_lost`` mark a pooled connection the
upstream closed (as aiohttp's ``client_proto`` does) so the pool never hands it out.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterable
from typing import Protocol, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from gateway.proxy.http1.errors import ProtocolError
from gateway.proxy.http1.flow import FlowControl
from gateway.proxy.http1.request import PreparedRequest
from gateway.proxy.http1.response import Response

#: the largest response header block accepted (status line and fields, interim ones included)
MAX_HEAD = 64 * 1024
#: RFC 9110 §10.1.1 leaves the wait for ``100 Continue`` open; curl waits one second
EXPECT_TIMEOUT = 1.0
#: the transport's write buffer: past HIGH the body sender waits until it drains to LOW
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
_VERSIONS = frozenset({"1.1", "1.0"})
_CLOSED = "the upstream closed the connection"


class Owner(Protocol):
    """What a connection goes back to once its exchange ends (a ``Pool``)."""

    #: the class of the responses it reads
    response_type: type[Response]

    def release(self, conn: Connection) -> None:
        """The exchange ended cleanly: the connection may serve another."""

    def discard(self, conn: Connection) -> None:
        """The connection is spent: drop it."""


class Connection(asyncio.Protocol):
    __slots__ = (
        "_close_delimited",
        "_coding",
        "_continue",
        "_done",
        "_head_only",
        "_head_size",
        "_headers",
        "_keep_alive",
        "_length",
        "_loop",
        "_lost",
        "_parser",
        "_pending",
        "_remaining",
        "_request_sent",
        "_reusable",
        "_waiter",
        "closed",
        "created",
        "flow",
        "idle_since",
        "pool",
        "received",
        "response",
        "reused",
        "transport",
    )

    def __init__(self, pool: Owner, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self._loop = loop
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.flow: FlowControl = cast(FlowControl, None)
        self.created = self.idle_since = loop.time()
        #: has served an exchange before this one (a failure may be a stale keep-alive)
        self.reused = False
        #: the upstream closed, or the connection was dropped: never hand it out again
        self.closed = False
        #: some byte of a response arrived during the current exchange
        self.received = False
        self.response: Response | None = None
        self._lost = loop.create_future()
        #: None while idle in the pool: bytes arriving then are stray
        self._parser: HttpResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._continue: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._head_size = self._pending = self._remaining = 0
        self._length: bytes | None = None
        self._coding: bytes | None = None
        self._head_only = self._done = self._close_delimited = False
        self._keep_alive = self._reusable = self._request_sent = True

    # --- the exchange --------------------------------------------------------------------

    async def exchange(
        self, request: PreparedRequest, body: AsyncIterable[bytes] | None
    ) -> Response:
        """Send ``request``; return once the final response's head is in."""
        waiter = self._start(request)
        if body is None:
            return await waiter
        self._request_sent = False
        sender = self._loop.create_task(self._send_body(request, body))
        sender.add_done_callback(self._body_done)
        try:
            return await waiter
        finally:
            if not sender.done():
                # a final response before the whole body (an early 413 or 401): stop
                # sending; unsent, the rest never comes, so the connection ends with it
                sender.cancel()

    def _start(self, request: PreparedRequest) -> asyncio.Future[Response]:
        if self.closed:
            raise ConnectionResetError(_CLOSED)
        self._parser = HttpResponseParser(self)
        self._headers = []
        self._head_size = self._pending = self._remaining = 0
        self._length = self._coding = None
        self._head_only = request.head_only
        self._keep_alive = request.keep_alive
        self._done = self._close_delimited = self.received = False
        self._request_sent = True
        self.response = None
        waiter = self._waiter = self._loop.create_future()
        self.transport.write(request.head)
        return waiter

    async def _send_body(self, request: PreparedRequest, body: AsyncIterable[bytes]) -> None:
        """Stream the body, pulling the next chunk only once the transport has drained."""
        if request.expect:
            await self._expect_continue()
        transport = self.transport
        flow = self.flow
        length = request.length
        sent = 0
        async for chunk in body:
            if not chunk:
                continue
            if self.closed:
                raise ConnectionResetError(_CLOSED)
            sent += len(chunk)
            if length is None:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            elif sent > length:
                raise ProtocolError("the request body is longer than its Content-Length")
            else:
                transport.write(chunk)
            if flow.write_paused:
                await flow.drain()
        if length is not None and sent != length:
            raise ProtocolError("the request body is shorter than its Content-Length")
        if self.closed:
            raise ConnectionResetError(_CLOSED)
        if length is None:
            transport.write(b"0\r\n\r\n")
        self._request_sent = True

    async def _expect_continue(self) -> None:
        """RFC 9110 §10.1.1: hold the body until 100 (Continue), but not for long."""
        waiter = self._continue = self._loop.create_future()
        timer = self._loop.call_later(EXPECT_TIMEOUT, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._continue = None

    def _body_done(self, sender: asyncio.Task[None]) -> None:
        if not sender.cancelled() and (exc := sender.exception()) is not None:
            self._fail(exc)  # half a request is on the wire: the connection is spent

    # --- state the pool asks about -------------------------------------------------------

    def reusable(self) -> bool:
        return self._done and self._reusable and self._request_sent and not self.closed

    def response_closed(self, whole: bool) -> None:
        """The response was closed (``whole``: its body read to the end): back to the pool
        when the connection may persist (RFC 9112 §9.3), else dropped."""
        if whole and self.reusable():
            self.pool.release(self)
        else:
            self.pool.discard(self)

    def usable(self, idle_since: float, created_since: float) -> bool:
        """Alive, idle since ``idle_since`` at the earliest, created since ``created_since``."""
        return (
            not self.closed
            and not self.transport.is_closing()
            and self.idle_since > idle_since
            and self.created > created_since
        )

    def idle(self, now: float) -> None:
        self._parser = None
        self.response = None
        self.reused = True
        self.idle_since = now

    def abort(self) -> None:
        self.closed = True
        self._reusable = False
        self.transport.abort()

    def close(self) -> None:
        """Close gracefully (an idle connection: nothing is in flight)."""
        self.closed = True
        self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    def _fail(self, exc: BaseException) -> None:
        """End the exchange with ``exc`` for whoever waits on it, and drop the connection."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(exc)
        elif self.response is not None:
            self.response.fail(exc)
        self.abort()

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.flow = FlowControl(self.transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            self.abort()  # bytes while idle (a 408, say): nothing after them can be trusted
            return
        if self._done:
            self._reusable = False  # bytes after a complete response: never the next one's
            return
        self.received = True
        if self._remaining:
            self._counted_body(data)
            return
        try:
            parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(ProtocolError("the upstream switched protocols"))
            return
        except HttpParserError as exc:
            if self._done:
                self._reusable = False
            elif isinstance(exc.__context__, ProtocolError):
                self._fail(exc.__context__)
            else:
                self._fail(ProtocolError(f"invalid response from the upstream: {exc}"))
            return
        if self._headers is not None:
            self._pending += len(data)
            if self._pending > MAX_HEAD:
                self._fail(ProtocolError("the response header block is over 64 KiB"))

    def _counted_body(self, data: bytes) -> None:
        """RFC 9112 §6.2: a Content-Length body is just the next N bytes. Past the packet
        holding the head they are counted here rather than parsed: no callback, no copy."""
        remaining = self._remaining - len(data)
        response = cast(Response, self.response)
        if remaining > 0:
            self._remaining = remaining
            response.feed(data)
            return
        self._remaining = 0
        self._done = True
        if remaining < 0:
            self._reusable = False  # bytes after the body: never the next response's
            data = data[:remaining]
        response.feed(data)
        response.finish()

    def eof_received(self) -> None:
        self.closed = True  # RFC 9112 §9.6: the upstream is done; the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._reusable = False
        if self.flow is not None:
            self.flow.connection_lost()
        if self._continue is not None:
            _resolve(self._continue)
        error = exc or ConnectionResetError(_CLOSED)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(error)
        elif self.response is not None and not self._done:
            if self._close_delimited and exc is None:
                self._done = True
                self.response.finish()
            else:
                self.response.fail(error)
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # --- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:
            raise ProtocolError("bytes after the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if headers is None:
            return  # a trailer field (RFC 9112 §7.1.2): dropped
        name = name.lower()
        self._head_size += len(name) + len(value)
        headers.append((name, value))
        if name == b"content-length":
            self._length = value
        elif name == b"transfer-encoding":
            # a second field is a second coding (RFC 9110 §5.3): never plain ``chunked``
            self._coding = b"" if self._coding is not None else value

    def on_headers_complete(self) -> None:
        parser = cast(HttpResponseParser, self._parser)
        status = parser.get_status_code()
        if status < 200:
            if status < 100 or status == 101:
                raise ProtocolError(f"the upstream answered {status}")
            if status == 100 and self._continue is not None:
                _resolve(self._continue)
            self._headers = []  # interim (RFC 9110 §15.2): its fields are not relayed
            self._length = self._coding = None
            return
        if status > 599:
            raise ProtocolError(f"the upstream answered {status}")
        if parser.get_http_version() not in _VERSIONS:
            raise ProtocolError(f"the upstream answered HTTP/{parser.get_http_version()}")
        if self._head_size > MAX_HEAD:
            raise ProtocolError("the response header block is over 64 KiB")
        coding = self._coding
        if coding is not None and coding.strip().lower() != b"chunked":
            raise ProtocolError("a transfer coding other than chunked")
        headers = cast(list[tuple[bytes, bytes]], self._headers)
        self._headers = None
        self._reusable = self._keep_alive and parser.should_keep_alive()
        no_body = self._head_only or status == 204 or status == 304
        if status == 204 and (coding is not None or self._declares_content()):
            # RFC 9110 §8.6, RFC 9112 §6.1 forbid both on a 204: its "body" may follow
            # (a 304 may carry them: they describe the 200 it stands for)
            self._reusable = False
        self._close_delimited = not no_body and coding is None and self._length is None
        if not no_body and coding is None and self._length is not None:
            self._remaining = int(self._length)  # llhttp checked it: digits only
        response = self.pool.response_type(self, self.flow, self._loop, status, headers)
        self.response = response
        if no_body:
            self._done = True
            response.finish()
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _declares_content(self) -> bool:
        return self._length is not None and self._length.strip() != b"0"

    def on_body(self, body: bytes) -> None:
        if self._done:
            self._reusable = False  # a HEAD response's "body": not one (RFC 9110 §9.3.2)
            return
        if self._remaining:
            self._remaining -= len(body)
        cast(Response, self.response).feed(body)

    def on_message_complete(self) -> None:
        if self._headers is not None or self._done:
            return  # the end of an interim response, or of one already complete
        self._done = True
        cast(Response, self.response).finish()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
