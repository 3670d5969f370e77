"""One proxied exchange: stream the client's body up and the upstream's response down.

Nothing is buffered whole: each chunk is passed on as it comes and the next one is read only
when the other side has taken it (the ASGI server and aiohttp both apply backpressure), so a
transfer of any size holds a few chunks in memory at a time.

There is no whole-exchange timeout. One deadline moves with the exchange (RFC 9110 §9.3 leaves
time limits to the implementation; these follow common reverse-proxy practice):

- while the request body streams: ``idle_timeout`` since the last chunk;
- once it is sent: the route's ``timeout`` for the upstream's response headers (504);
- while the response body streams: ``idle_timeout`` since the last chunk. Past the headers a
  failure can no longer become an error response, so the client's response is aborted: the
  connection closes without the final chunk, and the client sees an incomplete response
  rather than a truncated one passed off as complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.proxy.forwarder import Forwarder, UpstreamResponse
from gateway.proxy.headers import response_headers

log = logging.getLogger("gateway.proxy")

Receive = Any
Send = Any


class ClientDisconnected(Exception):
    """The client went away while its request body was being sent upstream."""


class RequestBody:
    """The client's body as the async iterable the upstream client streams from."""

    __slots__ = ("_deadline", "_idle", "_receive", "_wait", "complete", "disconnected")

    def __init__(
        self, receive: Receive, deadline: asyncio.Timeout, idle: float, wait: float
    ) -> None:
        self._receive = receive
        self._deadline = deadline
        self._idle = idle
        self._wait = wait
        self.complete = False
        self.disconnected = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        more = True
        while more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ClientDisconnected()
            more = message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            self._deadline.reschedule(loop.time() + self._idle)
        self.complete = True
        self._deadline.reschedule(loop.time() + self._wait)


class Exchange:
    """Relay one request; ``started`` tells whether an error can still become a response."""

    __slots__ = ("_idle", "_receive", "_send", "_wait", "started", "status")

    def __init__(self, receive: Receive, send: Send, wait: float, idle: float) -> None:
        self._receive = receive
        self._send = send
        #: seconds allowed for the upstream's response headers once the request is sent
        self._wait = wait
        self._idle = idle
        self.started = False
        #: the upstream's status, once relayed
        self.status = 0

    async def run(
        self,
        forwarder: Forwarder,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        has_body: bool,
    ) -> None:
        """Relay the exchange; raise ``UpstreamUnavailable`` / ``UpstreamTimeout`` on failure.

        Past ``started`` the client's response has been aborted by the time they are raised.
        A client that goes away is not a failure: the exchange just ends.
        """
        loop = asyncio.get_running_loop()
        body: RequestBody | None = None
        try:
            async with asyncio.timeout(None) as deadline:
                if has_body:
                    body = RequestBody(self._receive, deadline, self._idle, self._wait)
                else:
                    deadline.reschedule(loop.time() + self._wait)
                upstream = await forwarder.open(method, url, headers, body)
                try:
                    await self._relay_response(upstream, deadline, body is None or body.complete)
                finally:
                    upstream.close()
        except TimeoutError:
            if self.started:
                raise UpstreamTimeout("the upstream stalled mid-response") from None
            raise UpstreamTimeout() from None
        except UpstreamUnavailable:
            if body is not None and body.disconnected:
                return
            raise

    async def _relay_response(
        self, upstream: UpstreamResponse, deadline: asyncio.Timeout, watch: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        send = self._send
        await send(
            {
                "type": "http.response.start",
                "status": upstream.status,
                "headers": response_headers(upstream.headers),
            }
        )
        self.started = True
        self.status = upstream.status
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
                deadline.reschedule(loop.time() + self._idle)
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
        while (await self._receive())["type"] != "http.disconnect":
            pass
