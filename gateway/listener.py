"""The gateway's HTTP/1.1 listener: uvicorn's httptools protocol, bounded.

uvicorn's ``HttpToolsProtocol`` feeds llhttp whatever arrives. The request line comes to
``on_url`` in pieces that uvicorn joins, and httptools joins a field's pieces itself, calling
``on_header`` only once the field is whole: a 200 MB value is held whole before any callback
sees it, and nothing bounds a head in time. ``GatewayProtocol`` (serving ``gateway serve``, its
workers and ``gateway demo``) adds, per connection:

- a bound on the head (RFC 6585 §5, 431 "Request Header Fields Too Large"): the bytes that
  arrive while a head is incomplete are counted before the parser is fed, and only what fits
  in ``[server] max_request_head`` is fed; past it, or past ``max_header_fields`` fields, 431
  and close. A chunked body's trailer section is a header block too, bounded alike. A head
  that starts inside the packet ending the previous request is counted from the next packet
  (one read, at most 256 kB, is the slack);
- time: a request's head must be whole within ``head_timeout`` of the connection opening or of
  the previous response's end, its first byte must come within ``keep_alive_timeout``; else
  the connection is closed, after a 408 (RFC 9110 §15.5.9) when a byte of it had come. One
  timer per connection, re-armed only when it fires: a request arms none;
- ``max_connections`` per process, fewer when the file descriptor limit could not hold them
  (``connection_capacity``): a connection past it is answered 503 as soon as it opens;
- RFC 9112 §3.2, for every path: an HTTP/1.1 request without a ``Host`` field, or any request
  with two, is 400;
- RFC 9112 §6.1: a ``Transfer-Encoding`` other than one ``chunked`` is 501 (llhttp would take
  ``gzip, chunked`` as chunked, and the coding would be lost).

The listener's answers are ``ListenerRefusal`` errors, rendered by ``GatewayError`` like every
other, with ``Connection: close``; the connection is then closed. Each is counted in
``gateway_listener_closes_total`` and logged at most once a minute per reason, so a flood
cannot fill a disk. uvicorn's own warning per malformed request or unsupported ``Upgrade`` is
gone with it.

Descriptors: a connection past what the process's file descriptors can hold is refused
like one past ``max_connections`` (``gateway.descriptors``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, Protocol, cast

import httptools
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.config import Config
from gateway.descriptors import connection_capacity
from gateway.errors import (
    ListenerRefusal,
    MalformedRequest,
    MissingOrRepeatedHost,
    RequestHeadTimeout,
    RequestHeadTooLarge,
    TooManyConnections,
    TooManyHeaderFields,
    UnsupportedTransferCoding,
)

log = logging.getLogger("gateway.listener")

#: the connections the listener closes with nothing to say: idle past a timeout
IDLE = "idle"
REFUSALS: tuple[type[ListenerRefusal], ...] = (
    MalformedRequest,
    MissingOrRepeatedHost,
    RequestHeadTimeout,
    RequestHeadTooLarge,
    TooManyHeaderFields,
    UnsupportedTransferCoding,
    TooManyConnections,
)
_BY_LABEL = {refusal.label: refusal for refusal in REFUSALS}
#: every reason the listener closes a connection for (the metric's labels)
CLOSE_REASONS = (IDLE, *_BY_LABEL)
#: seconds between two log lines for one reason
LOG_INTERVAL = 60.0
#: header fields the listener looks at (RFC 9112 §3.2, §6.1; Expect as uvicorn does)
_FRAMING = frozenset({b"host", b"transfer-encoding", b"expect"})
#: how the parser stops short of the end of what it was fed
_PARSER_STOPPED = (httptools.HttpParserUpgrade, httptools.HttpParserError)
#: a timer may fire this early (uvloop rounds to milliseconds)
_TIMER_SLACK = 0.002


def _rendered(refusal: ListenerRefusal) -> tuple[bytes, bytes]:
    """The response to ``refusal`` as bytes, split where its ``Date`` goes."""
    status, headers, body = refusal.response_parts()
    head = STATUS_LINE[status] + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"connection: close\r\n", b"\r\n" + body


#: each refusal's response, rendered once
_RESPONSES = {refusal: _rendered(refusal()) for refusal in REFUSALS}


def _refusal_for(error: httptools.HttpParserError) -> type[ListenerRefusal]:
    """What a parser error is answered with: a refusal raised in a callback comes back as its
    context; llhttp refuses a second ``chunked`` (or anything after it) itself, while parsing
    the value, before ``on_header`` could."""
    cause = error.__context__
    if isinstance(cause, ListenerRefusal):
        return type(cause)
    if "invalid `transfer-encoding`" in str(error).lower():
        return UnsupportedTransferCoding
    return MalformedRequest


def _response(refusal: type[ListenerRefusal]) -> bytes:
    head, tail = _RESPONSES[refusal]
    # RFC 9110 §6.6.1: an origin server sends Date with every 4xx (and may with a 5xx)
    return head + b"date: " + formatdate(usegmt=True).encode() + b"\r\n" + tail


# --- one process's limits ------------------------------------------------------------------


class ConnectionLimits:
    """The listener's limits in one process, and what it closes: counted by reason through
    ``count`` (the metrics), logged at most once per ``LOG_INTERVAL`` per reason."""

    def __init__(self, config: Config, count: Callable[[str], None]) -> None:
        server = config.server
        self.max_request_head = server.max_request_head
        self.max_header_fields = server.max_header_fields
        self.head_timeout = server.head_timeout
        #: until a request's first byte (a fresh connection's, or the next on a kept-alive one)
        self.idle_timeout = min(server.keep_alive_timeout, server.head_timeout)
        self.capacity = connection_capacity(config)
        self._count = count
        #: reason -> (monotonic time of its last log line, closes since)
        self._logged: dict[str, tuple[float, int]] = {}

    def closed(self, reason: str) -> None:
        self._count(reason)
        if reason == IDLE:
            return
        now = time.monotonic()
        last, since = self._logged.get(reason, (-LOG_INTERVAL, 0))
        if now - last < LOG_INTERVAL:
            self._logged[reason] = (last, since + 1)
            return
        self._logged[reason] = (now, 0)
        more = f", {since} more since the last line" if since else ""
        if reason == TooManyConnections.label:
            what = f"connections past the {self.capacity} this process holds answered 503"
        else:
            refusal = _BY_LABEL[reason]
            what = f"requests refused with {refusal.status_code}: {refusal.description}"
        log.warning(
            "listener: %s (counted in gateway_listener_closes_total; logged at most once a "
            "minute%s)",
            what,
            more,
        )


# --- the protocol --------------------------------------------------------------------------


class Limited(Protocol):
    """The app served: it holds its process's limits (``GatewayApp`` does)."""

    connection_limits: ConnectionLimits


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the listener's limits (see the module docstring).

    Connection state: ``_reading_head`` while the bytes that arrive belong to a head (or a
    trailer section), ``_head_bytes`` of them so far; ``_waiting`` while the head timer applies
    (from the connection's opening or a response's end until the next head is whole), since
    ``_waiting_since``; ``_timer``, armed at ``_timer_at``."""

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = cast(Limited, self.app).connection_limits
        self._limits = limits
        self._max_head = limits.max_request_head
        self._max_fields = limits.max_header_fields
        self._reading_head = True
        self._head_bytes = 0
        self._host_seen = False
        self._coding_seen = False
        #: the scope of the last whole request: a new one means the next request has begun
        self._completed_scope: Any = None
        self._waiting = True
        self._waiting_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # --- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._limits.capacity:
            self.transport = transport  # for uvicorn's connection_lost
            self._limits.closed(TooManyConnections.label)
            transport.write(_response(TooManyConnections))
            transport.close()
            return
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        self._arm(self._waiting_since + self._limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._feed_past_bound(data)
                return
        try:  # as _feed, inline: a call here would cost more than the listener's own work
            self.parser.feed_data(data)
        except _PARSER_STOPPED as exc:
            self._parser_stopped(exc)

    def _feed(self, data: bytes | memoryview) -> bool:
        """Parse ``data``; False when the connection was refused or handed over."""
        try:
            self.parser.feed_data(data)
        except _PARSER_STOPPED as exc:
            return self._parser_stopped(exc)
        return True

    def _parser_stopped(self, stop: Exception) -> bool:
        """The parser stopped at an upgrade or an error; False unless it parses on."""
        if isinstance(stop, httptools.HttpParserUpgrade):
            # uvicorn's own answer, less its warning per request for an unknown protocol
            if self._should_upgrade():
                self.handle_websocket_upgrade()
                return False
            return True
        self._refuse(_refusal_for(cast(httptools.HttpParserError, stop)))
        return False

    def _feed_past_bound(self, data: bytes) -> None:
        """``_head_bytes``, counting all of ``data``, is past ``max_request_head``: feed what
        fits. The head must end within it; the rest (a body, the next request) is fed then,
        bounded again if a head or trailer section began in what was fed."""
        view = memoryview(data)
        while True:
            fits = len(view) - (self._head_bytes - self._max_head)
            # a section beginning in what is fed resets the count (its bytes in there are
            # the slack the module docstring admits); one that goes on stays at the bound
            self._head_bytes = self._max_head
            if fits > 0 and not self._feed(view[:fits]):
                return
            if self._reading_head and self._head_bytes == self._max_head:
                self._refuse(RequestHeadTooLarge)
                return
            view = view[fits:]
            if self._reading_head:
                self._head_bytes += len(view)
            if not self._reading_head or self._head_bytes <= self._max_head:
                self._feed(view)
                return

    def _refuse(self, refusal: type[ListenerRefusal]) -> None:
        """Answer ``refusal`` and close; when an earlier request's response is still to come
        (pipelining), or this one's has begun, close without a word: an answer then would be
        read as that response, or cut into it."""
        if self.transport.is_closing():
            return
        self._limits.closed(refusal.label)
        cycle = self.cycle
        # the last request parsed: answered, or this very one (refused in its trailers)
        if not self.pipeline and (
            cycle is None
            or cycle.response_complete
            or (cycle.scope is self.scope and not cycle.response_started)
        ):
            self.transport.write(_response(refusal))
        if cycle is not None and not cycle.response_complete:
            # the app reading this request's body, or answering it, learns it is gone
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    # --- timers -------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        if not self._waiting or self.transport.is_closing():
            return  # a request is being served: its response's end arms the timer again
        began = self._reading_head and (
            self._head_bytes > 0 or self.scope is not self._completed_scope
        )
        limits = self._limits
        deadline = self._waiting_since + (limits.head_timeout if began else limits.idle_timeout)
        if deadline - self.loop.time() > _TIMER_SLACK:
            self._arm(deadline)
        elif began:
            self._refuse(RequestHeadTimeout)
        else:
            limits.closed(IDLE)
            self.transport.close()

    def on_response_complete(self) -> None:
        """uvicorn's, with the head timer in place of its keep-alive timer per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._waiting = True
        self._waiting_since = now = self.loop.time()
        deadline = now + self._limits.idle_timeout
        if self._timer is None or self._timer_at > deadline:
            self._arm(deadline)

    # --- parser callbacks ---------------------------------------------------------------
    # (per request: they call uvicorn's by name, a zero-argument super() costing more than the
    # listener's own work)

    def on_header(self, name: bytes, value: bytes) -> None:
        """uvicorn's (the name lower-cased, trailing whitespace off the value, ``Expect``
        noted), with the field count bounded and ``Host`` and ``Transfer-Encoding`` checked."""
        name = name.lower()
        # llhttp keeps trailing OWS, which RFC 9110 §5.5 excludes from the value
        value = value.rstrip(b" \t")
        headers = self.headers
        if len(headers) >= self._max_fields:
            raise TooManyHeaderFields()
        if name in _FRAMING:
            if name == b"host":
                if self._host_seen:
                    raise MissingOrRepeatedHost()
                self._host_seen = True
            elif name == b"transfer-encoding":
                # a second field is a second coding (RFC 9110 §5.3): never plain chunked
                if self._coding_seen or value.lower() != b"chunked":
                    raise UnsupportedTransferCoding()
                self._coding_seen = True
            elif value.lower() == b"100-continue":
                self.expect_100_continue = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._reading_head = self._waiting = False
        if not self._host_seen and self.parser.get_http_version() != "1.0":
            raise MissingOrRepeatedHost()
        HttpToolsProtocol.on_headers_complete(self)

    def on_chunk_header(self) -> None:
        # the chunk's data follows, or, after the last chunk, the trailer section: a header
        # block, bounded as a head is until data comes
        self._reading_head = True
        self._head_bytes = 0

    def on_body(self, body: bytes) -> None:
        self._reading_head = False
        HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        # what arrives next is the next request's head
        self._reading_head = True
        self._head_bytes = 0
        self._host_seen = self._coding_seen = False
        self._completed_scope = self.scope
        HttpToolsProtocol.on_message_complete(self)
