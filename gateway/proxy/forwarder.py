"""The one seam between the proxy and its HTTP client: open an upstream exchange.

``Forwarder.open()`` sends the request (streaming its body) and returns once the upstream's
response head is in; ``UpstreamResponse.chunks()`` then streams the body as it arrives, and
``close()`` hands the connection back to its pool or drops it. The client is our own HTTP/1.1
client on asyncio Protocols (``gateway.proxy.http1``), which knows nothing of the gateway.
Its failures become the gateway's here, in one table for ``open()`` and the body alike (as
httpx's ``map_httpcore_exceptions`` does for httpcore), and nowhere else. The original is the
``__cause__``, for the log; the client never sees upstream addresses::

    RequestError (CR/LF/NUL in a field, ...)          -> UpstreamUnavailable (502)
    ProtocolError (a malformed response)              -> UpstreamUnavailable (502)
    ConnectTimeout (no connection, no pool slot)      -> UpstreamTimeout (504)
    IncompleteBody (the body broke off)               -> UpstreamUnavailable (response aborted)
    anything else (refused, reset, TLS, ...)          -> UpstreamUnavailable (502)

The client sends only what the caller gives it (plus Host and framing), keeps no cookies,
never decompresses, follows no redirects and has no timeout past connecting: the exchange
enforces the response-header and idle deadlines by cancelling ``open()`` or the body's
iteration, which drops the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable
from typing import cast

from gateway.config import PoolConfig
from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from gateway.proxy.http1.errors import (
    ConnectTimeout,
    IncompleteBody,
    ProtocolError,
    RequestError,
)
from gateway.proxy.http1.origin import Origin
from gateway.proxy.http1.pool import Pool, PoolLimits
from gateway.proxy.http1.request import prepare
from gateway.proxy.http1.response import Response

__all__ = ["Forwarder", "Origin", "UpstreamResponse"]

#: the client's failures as the gateway's: (error, description)
_TRANSLATED: dict[type[Exception], tuple[type[GatewayError], str]] = {
    RequestError: (UpstreamUnavailable, "the request cannot be sent upstream"),
    ProtocolError: (UpstreamUnavailable, "the upstream sent an invalid response"),
    ConnectTimeout: (UpstreamTimeout, "no connection to the upstream in time"),
    IncompleteBody: (UpstreamUnavailable, "the upstream broke off its response"),
}


def translated(exc: Exception) -> GatewayError:
    """The gateway's error for a failure of the upstream client (raise it ``from exc``)."""
    known = _TRANSLATED.get(type(exc))
    if known is None:
        return UpstreamUnavailable()
    error, description = known
    return error(description)


class UpstreamResponse(Response):
    """The upstream's response as the client reads it (``gateway.proxy.http1.response``),
    a body that breaks off raising the gateway's error (``translated``) instead of the
    client's: built by the pools, so the body costs nothing more to relay."""

    __slots__ = ()

    def broken_off(self, reason: BaseException) -> Exception:
        incomplete = super().broken_off(reason)
        error = translated(incomplete)
        error.__cause__ = incomplete
        return error


class Forwarder:
    def __init__(self, connect_timeout: float, pool: PoolConfig | None = None) -> None:
        config = pool or PoolConfig()
        self._connect_timeout = connect_timeout
        self._limits = PoolLimits(
            config.max_connections_per_origin, config.pool_idle_timeout, config.pool_max_age
        )
        self._pools: dict[Origin, Pool] = {}
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._pruner = asyncio.get_running_loop().create_task(self._prune())

    async def close(self) -> None:
        """Stop pruning and close every pooled connection."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()

    async def open(
        self,
        origin: Origin,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        """Send the request; return when the response head has arrived.

        ``target`` is the request-target as sent (path and ``?query``, already encoded);
        ``headers`` the end-to-end fields, lower-case names, already scrubbed.
        """
        pool = self._pools.get(origin)
        if pool is None:
            if self._pruner is None:
                raise UpstreamUnavailable("the proxy has not been started")
            loop = asyncio.get_running_loop()
            pool = Pool(origin, self._connect_timeout, self._limits, loop, UpstreamResponse)
            self._pools[origin] = pool
        try:
            request = prepare(origin, method, target, headers, body is not None)
            response = await pool.request(request, body)
        except Exception as exc:
            raise translated(exc) from exc
        return cast(UpstreamResponse, response)

    async def _prune(self) -> None:
        """Close idle connections past their idle timeout or age, even when no request comes."""
        limits = self._limits
        interval = min(limits.idle_timeout, limits.max_age) / 2
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for pool in self._pools.values():
                pool.prune(now)
