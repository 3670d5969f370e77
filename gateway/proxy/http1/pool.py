"""Keep-alive connections to one origin: reuse, limits, waiting for a slot, one retry.

RFC 9112 §9.3 lets a client keep a connection open for further requests; §9.4 asks it to
limit how many it holds to one server. Here:

- at most ``PoolLimits.max_connections`` connections are open or opening at once; a request
  past that waits for one to come back (or for a slot to free up), for at most the connect
  timeout (then ``ConnectTimeout``, as for a connect that takes too long);
- idle connections are reused newest first (the warmest, and the least likely to have been
  closed by the upstream's own idle timer); one idle longer than ``idle_timeout``, or older
  than ``max_age`` (so DNS changes and upstream rebalancing are picked up), is closed
  instead: when it would be handed out, when it comes back, and by ``prune()``;
- RFC 9112 §9.3.1: "A user agent MUST NOT automatically retry a request with a
  non-idempotent method". A request that is idempotent (RFC 9110 §9.2.2), has no body and
  failed on a *reused* connection before a single response byte arrived most likely met a
  keep-alive connection the upstream had just closed: it is sent once more, on a new
  connection. Never a POST or PATCH, never a request with a body, never twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass

from gateway.proxy.http1.connection import Connection
from gateway.proxy.http1.errors import ConnectTimeout
from gateway.proxy.http1.origin import Origin
from gateway.proxy.http1.request import PreparedRequest
from gateway.proxy.http1.response import Response


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """How many connections a pool holds to its origin, and for how long."""

    #: connections open or being opened at once
    max_connections: int
    #: seconds a kept-alive connection may sit idle before it is closed
    idle_timeout: float
    #: seconds after which a connection is closed once its exchange ends, however busy
    max_age: float


class Pool:
    __slots__ = (
        "_connect_timeout",
        "_connections",
        "_idle",
        "_limits",
        "_loop",
        "_origin",
        "_slots",
        "_waiters",
        "response_type",
    )

    def __init__(
        self,
        origin: Origin,
        connect_timeout: float,
        limits: PoolLimits,
        loop: asyncio.AbstractEventLoop,
        response_type: type[Response] = Response,
    ) -> None:
        self._origin = origin
        self._connect_timeout = connect_timeout
        self._limits = limits
        self._loop = loop
        #: what its connections' responses are: ``Response``, or a caller's subclass of it
        self.response_type = response_type
        #: idle connections, the most recently used last
        self._idle: list[Connection] = []
        #: every open connection, idle or busy (for limits and for close())
        self._connections: set[Connection] = set()
        #: connections open or being opened: never more than max_connections
        self._slots = 0
        #: requests waiting for a connection (result) or a free slot (None)
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()

    async def request(
        self, request: PreparedRequest, body: AsyncIterable[bytes] | None
    ) -> Response:
        conn = await self._acquire()
        try:
            return await conn.exchange(request, body)
        except OSError:
            retry = conn.reused and not conn.received and request.idempotent and body is None
            if not retry:
                self.discard(conn)
                raise
        except BaseException:
            self.discard(conn)
            raise
        # the slot of the stale connection goes straight to its replacement: no waiting
        self._forget(conn)
        conn.abort()
        try:
            conn = await self._connect()
        except BaseException:
            self._free_slot()
            raise
        try:
            return await conn.exchange(request, body)
        except BaseException:
            self.discard(conn)
            raise

    async def _acquire(self) -> Connection:
        idle = self._idle
        if idle:
            now = self._loop.time()
            idle_since = now - self._limits.idle_timeout
            created_since = now - self._limits.max_age
            while idle:
                conn = idle.pop()
                if conn.usable(idle_since, created_since):
                    return conn
                self.discard(conn)
        if self._slots >= self._limits.max_connections:
            handed = await self._wait()
            if handed is not None:
                return handed
        else:
            self._slots += 1
        try:
            return await self._connect()
        except BaseException:
            self._free_slot()
            raise

    async def _wait(self) -> Connection | None:
        """A connection handed back by another request, or None: a free slot to open one."""
        waiter: asyncio.Future[Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # handed something just as the wait ended: pass it on, or it is lost
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise ConnectTimeout("no free connection to the upstream in time") from exc
            raise

    async def _connect(self) -> Connection:
        """Open a connection in a slot already reserved for it."""
        origin = self._origin
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await self._loop.create_connection(
                    lambda: Connection(self, self._loop),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.server_hostname,
                )
        except TimeoutError as exc:
            raise ConnectTimeout("no connection to the upstream in time") from exc
        self._connections.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        """A connection whose exchange ended cleanly: to a waiter, to the idle list, or shut."""
        now = self._loop.time()
        if now - conn.created > self._limits.max_age:
            self.discard(conn)
            return
        conn.idle(now)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def discard(self, conn: Connection) -> None:
        """Drop a connection (idempotent) and pass its slot on."""
        conn.abort()
        if self._forget(conn):
            self._free_slot()

    def _forget(self, conn: Connection) -> bool:
        if conn in self._connections:
            self._connections.remove(conn)
            return True
        return False

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot is the waiter's now
                return
        self._slots -= 1

    def prune(self, now: float) -> None:
        """Close idle connections past the idle timeout or the maximum age, or already shut."""
        idle_since = now - self._limits.idle_timeout
        created_since = now - self._limits.max_age
        kept = []
        for conn in self._idle:
            if conn.usable(idle_since, created_since):
                kept.append(conn)
            else:
                conn.close()
                if self._forget(conn):
                    self._free_slot()
        self._idle = kept

    async def close(self) -> None:
        """Drop every connection, busy ones too, and wait until their sockets are shut."""
        connections = list(self._connections)
        for conn in connections:
            self.discard(conn)
        self._idle.clear()
        await asyncio.gather(*(conn.wait_closed() for conn in connections))
