"""Backpressure on one transport, both ways (modelled on uvicorn's ``flow_control.py``).

Reading: the response body waits in a bounded buffer; past its high-water mark the transport
stops reading, so the kernel's receive window closes and the upstream slows to the client's pace.
Writing: the transport calls ``pause_writing`` once its buffer passes the write limits; the
request body is not pulled further until ``drain()`` returns. A lost connection wakes a pending
``drain()`` with an error instead of leaving the sender waiting forever.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    __slots__ = ("_drain", "_lost", "_transport", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._drain: asyncio.Future[None] | None = None
        self._lost = False
        self.read_paused = False
        self.write_paused = False

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    async def drain(self) -> None:
        """Return once the transport takes writes again; raise if the connection is gone."""
        if self._lost:
            raise ConnectionResetError("the upstream closed the connection")
        if self.write_paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def connection_lost(self) -> None:
        self._lost = True
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the upstream closed the connection"))
