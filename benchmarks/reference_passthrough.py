"""The reference peer: a bare passthrough with no auth, what the gateway's proxy is measured
against. A raw ASGI app streaming each request to the upstream with one aiohttp
``ClientSession`` (no cookies, no decompression, no added headers), under uvicorn with uvloop
and httptools, one worker.

    .venv/bin/python -m benchmarks.reference_passthrough --port 8100 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import uvicorn
from yarl import URL

#: hop-by-hop, or framing that uvicorn redoes itself
DROP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"}


class Passthrough:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await self.session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.session is not None
        raw = scope["headers"]
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw if k not in DROP]
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in raw)

        async def body() -> AsyncIterator[bytes]:
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
                yield message.get("body", b"")

        url = self.upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        async with self.session.request(
            scope["method"],
            URL(url, encoded=True),
            headers=headers,
            data=body() if has_body else None,
            allow_redirects=False,
        ) as response:
            out = [(k.lower(), v) for k, v in response.raw_headers if k.lower() not in DROP]
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        Passthrough(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
