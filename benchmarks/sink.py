"""A small upstream of our own (asyncio, uvloop, httptools): the upload sink, and the upstream
to fall back to where Debian's nginx cannot be had.

A request with a body is read to its end, then answered 200 with the byte count (so an upload
is measured whole, not cut short by an early answer). ``GET /public/blob`` streams
``--blob-bytes`` bytes from memory; any other request gets the small fixed JSON body.

    .venv/bin/python -m benchmarks.sink --port 9002 [--blob-bytes N]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import httptools
import uvloop

BODY = b'{"ok":true,"items":[1,2,3]}'
CHUNK = memoryview(bytes(1 << 20))


def _head(length: int, content_type: bytes, keep_alive: bool) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nContent-Length: "
        b"%d\r\nConnection: %s\r\n\r\n" % (length, connection)
    )


class Connection(asyncio.Protocol):
    def __init__(self, blob_bytes: int) -> None:
        self.blob_bytes = blob_bytes
        self.url = b""
        self.received = 0
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.streaming: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.received = b"", 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        keep_alive = self.parser.should_keep_alive()
        if self.received or self.parser.get_method() in (b"PUT", b"POST"):
            answer = b"%d" % self.received
            self.transport.write(_head(len(answer), b"text/plain", keep_alive) + answer)
        elif self.url.startswith(b"/public/blob"):
            head = _head(self.blob_bytes, b"application/octet-stream", keep_alive)
            self.streaming = asyncio.ensure_future(self.stream(head, keep_alive))
            return
        else:
            self.transport.write(_head(len(BODY), b"application/json", keep_alive) + BODY)
        if not keep_alive:
            self.transport.close()

    async def stream(self, head: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        self.transport.write(head)
        left = self.blob_bytes
        while left > 0 and not self.transport.is_closing():
            await self.writable.wait()
            piece = CHUNK[: min(left, len(CHUNK))]
            self.transport.write(piece)
            left -= len(piece)
        if not keep_alive:
            self.transport.close()


async def serve(port: int, blob_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(blob_bytes), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--blob-bytes", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.blob_bytes))


if __name__ == "__main__":
    main()
