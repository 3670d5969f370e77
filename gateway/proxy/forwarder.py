"""The one seam between the proxy and its HTTP client: open an upstream exchange.

``Forwarder.open()`` sends the request (streaming its body) and returns once the upstream's
response head is in; ``UpstreamResponse.chunks()`` then streams the body as it arrives, and
``close()`` hands the connection back to its pool or drops it. The client is our own HTTP/1.1
client on asyncio Protocols (``gateway.proxy.http1``). Its failures are translated here, in
``open()``, and, for the body, in ``UpstreamResponse.__anext__``; nowhere else. The original is
the ``__cause__``, for the log; the client never sees upstream addresses::

    refused, reset, malformed response before headers  -> UpstreamUnavailable (502)
    a request that cannot be sent (CR/LF/NUL in a field) -> UpstreamUnavailable (502)
    connect timeout, no pool slot within it             -> UpstreamTimeout (504)
    failure while streaming the body                   -> UpstreamUnavailable

The client sends only what the caller gives it (plus Host and framing), keeps no cookies,
never decompresses, follows no redirects and has no timeout past connecting: the exchange
enforces the response-header and idle deadlines by cancelling ``open()`` or the body's
iteration, which drops the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable

from gateway.config import PoolConfig
from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.proxy.http1.errors import ConnectTimeout, ProtocolError
from gateway.proxy.http1.origin import Origin
from gateway.proxy.http1.pool import Pool
from gateway.proxy.http1.request import prepare
from gateway.proxy.http1.response import UpstreamResponse

__all__ = ["Forwarder", "Origin", "UpstreamResponse"]


class Forwarder:
    def __init__(self, connect_timeout: float, pool: PoolConfig | None = None) -> None:
        self._connect_timeout = connect_timeout
        self._pool_config = pool or PoolConfig()
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
            pool = Pool(origin, self._connect_timeout, self._pool_config, loop)
            self._pools[origin] = pool
        try:
            request = prepare(origin, method, target, headers, body is not None)
        except (ProtocolError, UnicodeEncodeError) as exc:
            raise UpstreamUnavailable("the request cannot be sent upstream") from exc
        try:
            return await pool.request(request, body)
        except ConnectTimeout as exc:
            raise UpstreamTimeout("no connection to the upstream in time") from exc
        except ProtocolError as exc:
            raise UpstreamUnavailable("the upstream sent an invalid response") from exc
        except Exception as exc:
            raise UpstreamUnavailable() from exc

    async def _prune(self) -> None:
        """Close idle connections past their idle timeout or age, even when no request comes."""
        config = self._pool_config
        interval = min(config.pool_idle_timeout, config.pool_max_age) / 2
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for pool in self._pools.values():
                pool.prune(now)
