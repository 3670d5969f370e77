"""The one seam between the proxy and its HTTP client (aiohttp): open an upstream exchange.

``Forwarder.open()`` sends the request (streaming its body) and returns once the upstream's
response headers are in; ``UpstreamResponse.chunks()`` then streams the body as it arrives.
aiohttp's errors are translated here and nowhere else (the original is the ``__cause__``,
for the log; the client never sees upstream addresses)::

    refused, reset, malformed response before headers  -> UpstreamUnavailable (502)
    connect timeout                                    -> UpstreamTimeout (504)
    failure while streaming the body                   -> UpstreamUnavailable

The session keeps no cookies (``DummyCookieJar``: an upstream's ``Set-Cookie`` goes to that
client only), never decompresses (bodies pass byte for byte), adds none of the headers the
client did not send, follows no redirects, and has no whole-exchange timeout: the proxy
enforces the response-headers and idle deadlines itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
from yarl import URL

from gateway.errors import UpstreamTimeout, UpstreamUnavailable

#: aiohttp adds these unless told not to; a proxy sends only what the client sent
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.raw_headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as the upstream sends it (so each SSE event at once)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable("the upstream broke off its response") from exc

    def at_eof(self) -> bool:
        """Whether the whole body has been read."""
        return self._response.content.at_eof()

    def close(self) -> None:
        """Drop the connection (mid-body) or hand it back to the pool (body fully read)."""
        if self.at_eof():
            self._response.release()
        else:
            self._response.close()


class Forwarder:
    def __init__(self, connect_timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=None, sock_connect=None
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=self._timeout,
            skip_auto_headers=SKIP_AUTO_HEADERS,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def open(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        """Send the request; return when the response headers have arrived."""
        if self._session is None:
            raise UpstreamUnavailable("the proxy has not been started")
        try:
            response = await self._session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
            )
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout("no connection to the upstream in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable() from exc
        return UpstreamResponse(response)
