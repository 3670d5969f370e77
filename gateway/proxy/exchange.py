"""One proxied exchange: stream the client's body up and the upstream's response down.

Nothing is buffered whole: each chunk is passed on as it comes and the next one is read only
when the other side has taken it (the ASGI server and the upstream client both apply
backpressure), so a transfer of any size holds a few chunks in memory at a time. The one
exception is an MCP message (``mcp.py``): read whole first (``read_whole``, bounded by its
route's ``mcp_max_body`` and timed as a streamed body is), checked, then sent as read.

There is no whole-exchange timeout. One deadline moves with the exchange (RFC 9110 §9.3 leaves
time limits to the implementation; these follow common reverse-proxy practice):

- while the request body streams: ``idle_timeout`` since the last chunk;
- once it is sent: the route's ``timeout`` for the upstream's response headers (504);
- while the response body streams: ``idle_timeout`` since the last chunk. Past the headers a
  failure can no longer become an error response, so the client's response is aborted: the
  connection closes without the final chunk, and the client sees an incomplete response
  rather than a truncated one passed off as complete.

Deadlines are not a timer each: an exchange records the loop time by which it must make its
next step (a float assignment per chunk), and one ``Deadlines`` sweep per ``TICK`` for all
in-flight exchanges of the proxy cancels those past theirs. A deadline fires up to ``TICK``
late, which no limit of whole seconds notices; a request costs a set insertion and removal
instead of a timer scheduled and cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from gateway.context import RequestContext
from gateway.errors import McpBodyTimeout, McpMessageTooLarge, UpstreamTimeout, UpstreamUnavailable
from gateway.metrics import Metrics
from gateway.proxy.forwarder import Forwarder, UpstreamResponse
from gateway.proxy.headers import response_headers
from gateway.proxy.http1.origin import Origin

log = logging.getLogger("gateway.proxy")

Receive = Any
Send = Any


class ClientDisconnected(Exception):
    """The client went away while its request body was being sent upstream."""


class RequestBody:
    """The client's body as the async iterator the upstream client streams from."""

    __slots__ = ("_exchange", "_more", "complete", "disconnected")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._more = True
        self.complete = False
        self.disconnected = False

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        exchange = self._exchange
        while self._more:
            message = await exchange.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ClientDisconnected()
            self._more = message.get("more_body", False)
            chunk: bytes = message.get("body", b"")
            exchange.context.bytes_in += len(chunk)
            if self._more:
                exchange.deadline_in(exchange.idle)
            else:
                self.complete = True
                exchange.deadline_in(exchange.wait)
            if chunk:
                return chunk
        raise StopAsyncIteration


class WholeBody:
    """A body read whole before the exchange (an MCP message: ``mcp.py``), sent as it was read."""

    __slots__ = ("_chunk",)
    complete = True
    disconnected = False

    def __init__(self, body: bytes) -> None:
        self._chunk = body

    def __aiter__(self) -> WholeBody:
        return self

    async def __anext__(self) -> bytes:
        chunk, self._chunk = self._chunk, b""
        if not chunk:
            raise StopAsyncIteration
        return chunk


#: how often the in-flight exchanges' deadlines are checked, in seconds
TICK = 0.05


class Deadlines:
    """The deadlines of one proxy's in-flight exchanges, checked every ``TICK`` by one timer
    that runs only while some exchange is in flight."""

    __slots__ = ("_handle", "_live", "_loop")

    def __init__(self) -> None:
        self._live: set[Exchange] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, exchange: Exchange) -> None:
        self._live.add(exchange)
        if self._handle is None or self._loop is not exchange.loop:
            self._loop = loop = exchange.loop
            self._handle = loop.call_at(loop.time() + TICK, self._sweep)

    def unwatch(self, exchange: Exchange) -> None:
        self._live.discard(exchange)

    def _sweep(self) -> None:
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        now = loop.time()
        for exchange in [e for e in self._live if e.deadline <= now]:
            self._live.discard(exchange)
            exchange.expire()
        self._handle = loop.call_at(now + TICK, self._sweep) if self._live else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Exchange:
    """Relay one request; ``started`` tells whether an error can still become a response.

    What the access log says of the exchange (upstream status and time, bytes each way) is
    recorded on the request's ``context``."""

    __slots__ = (
        "_deadlines",
        "_expired",
        "_send",
        "_task",
        "context",
        "deadline",
        "idle",
        "loop",
        "metrics",
        "nonce",
        "receive",
        "started",
        "wait",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        wait: float,
        idle: float,
        deadlines: Deadlines,
        context: RequestContext,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics,
    ) -> None:
        self.receive = receive
        self._send = send
        #: seconds allowed for the upstream's response headers once the request is sent
        self.wait = wait
        self.idle = idle
        self.started = False
        self.context = context
        self.loop = loop
        #: counts the upstream's Set-Cookie fields the response may not carry
        self.metrics = metrics
        self._deadlines = deadlines
        self._task: asyncio.Task[Any] | None = None
        self._expired = False
        #: loop time by which the exchange must make its next step
        self.deadline = 0.0
        #: the ``DPoP-Nonce`` the response carries (RFC 9449 §8), in place of any upstream's
        self.nonce: bytes | None = None

    def deadline_in(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds

    def expire(self) -> None:
        """The deadline passed: end the exchange (``run`` turns this into a 504 or an abort)."""
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def read_whole(self, limit: int) -> bytes | None:
        """The client's body whole (an MCP message, ``mcp.py``), under the same idle deadline
        as a streamed one; None when the client went away. ``McpMessageTooLarge`` past
        ``limit`` bytes, ``McpBodyTimeout`` when the client stalls."""
        chunks: list[bytes] = []
        size = 0
        self.deadline_in(self.idle)
        self._task = task = asyncio.current_task(self.loop)
        self._deadlines.watch(self)
        try:
            async for chunk in RequestBody(self):
                size += len(chunk)
                if size > limit:
                    raise McpMessageTooLarge(limit)
                chunks.append(chunk)
        except ClientDisconnected:
            return None
        except asyncio.CancelledError:
            if not self._expired or task is None:
                raise
            task.uncancel()
            self._expired = False
            raise McpBodyTimeout() from None
        finally:
            self._deadlines.unwatch(self)
        return b"".join(chunks)

    async def run(
        self,
        forwarder: Forwarder,
        origin: Origin,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        has_body: bool,
        whole: bytes | None = None,
    ) -> None:
        """Relay the exchange; raise ``UpstreamUnavailable`` / ``UpstreamTimeout`` on failure.
        ``whole``: the body, read already (``read_whole``), instead of the client's stream.

        Past ``started`` the client's response has been aborted by the time they are raised.
        A client that goes away is not a failure: the exchange just ends.
        """
        body: RequestBody | WholeBody | None
        if whole is not None:
            body = WholeBody(whole)
        else:
            body = RequestBody(self) if has_body else None
        self.deadline_in(self.idle if isinstance(body, RequestBody) else self.wait)
        self._task = task = asyncio.current_task(self.loop)
        self._deadlines.watch(self)
        try:
            upstream = await forwarder.open(origin, method, target, headers, body)
            try:
                await self._relay_response(upstream, body is None or body.complete)
            finally:
                upstream.close()
        except asyncio.CancelledError:
            if not self._expired or task is None:
                raise
            task.uncancel()
            if self.started:
                raise UpstreamTimeout("the upstream stalled mid-response") from None
            raise UpstreamTimeout() from None
        except UpstreamUnavailable:
            if body is not None and body.disconnected:
                return
            raise
        finally:
            self._deadlines.unwatch(self)

    async def _relay_response(self, upstream: UpstreamResponse, watch: bool) -> None:
        send = self._send
        context = self.context
        context.upstream_answered(upstream.status)
        headers, cookies_dropped = response_headers(upstream.headers, context.request_id)
        if self.nonce is not None:
            headers = [h for h in headers if h[0] != b"dpop-nonce"]
            headers.append((b"dpop-nonce", self.nonce))
        if cookies_dropped:
            self.metrics.upstream_cookies_dropped(context.route or "", cookies_dropped)
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        self.started = True
        watcher: asyncio.Future[Any] | None = None
        chunks = 0
        more = True
        try:
            async for chunk in upstream.chunks():
                chunks += 1
                if watcher is None and watch and chunks == 2:
                    # a long response: stop pulling from the upstream if the client goes away
                    watcher = asyncio.ensure_future(self._disconnected())
                    watcher.add_done_callback(lambda _: upstream.close())
                # the last chunk ends the response itself: one message less per exchange
                more = not upstream.at_eof()
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                context.bytes_out += len(chunk)
                if not more:
                    return  # the body is whole: no need to ask the upstream for the end
                self.deadline = self.loop.time() + self.idle
        except UpstreamUnavailable:
            if watcher is not None and watcher.done():
                return  # the client left; closing the upstream is what ended the stream
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        if more:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _disconnected(self) -> None:
        """Return once the client has gone (a bodyless request still yields one message)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass
