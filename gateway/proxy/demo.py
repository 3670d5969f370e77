"""``gateway demo``: an echo upstream and routes to try the proxy with, in one process.

The echo upstream answers every request with JSON showing what reached it (method, path,
query, all as received; headers: so the identity headers the gateway added are visible), and serves
server-sent events (``text/event-stream``, WHATWG HTML §9.2) at any path ending in
``/events``: ``?count=N&interval=SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from gateway.config import RouteConfig

READ_SCOPE = "demo:read"
WRITE_SCOPE = "demo:write"
MAX_EVENTS = 100


def demo_routes(upstream_url: str) -> tuple[RouteConfig, ...]:
    """A public route, a read route (``demo:read``) and a write route (``demo:write``)."""
    return (
        RouteConfig(path="/demo/public", upstream=upstream_url, name="demo-public", public=True),
        RouteConfig(
            path="/demo",
            upstream=upstream_url,
            name="demo-read",
            methods=("GET", "HEAD"),
            scopes=((READ_SCOPE,),),
        ),
        RouteConfig(
            path="/demo",
            upstream=upstream_url,
            name="demo-write",
            methods=("DELETE", "PATCH", "POST", "PUT"),
            scopes=((WRITE_SCOPE,),),
        ),
    )


async def _echo(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/events"):
        return await _events(request)
    body = await request.read()
    path, _, query = request.raw_path.partition("?")
    return web.json_response(
        {
            "method": request.method,
            "path": path,
            "query": query,
            "headers": [[name, value] for name, value in request.headers.items()],
            "body_bytes": len(body),
        }
    )


async def _events(request: web.Request) -> web.StreamResponse:
    try:
        count = min(int(request.query.get("count", "5")), MAX_EVENTS)
        interval = float(request.query.get("interval", "1"))
    except ValueError:
        raise web.HTTPBadRequest(text="count and interval must be numbers") from None
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for n in range(1, count + 1):
        data = json.dumps({"n": n, "path": request.path})
        await response.write(f"id: {n}\nevent: tick\ndata: {data}\n\n".encode())
        if n < count:
            await asyncio.sleep(interval)
    await response.write_eof()
    return response


def echo_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


@dataclass(frozen=True)
class EchoUpstream:
    url: str
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_echo_upstream(host: str = "127.0.0.1", port: int = 0) -> EchoUpstream:
    """Serve the echo app on ``host:port`` (0: any free port) in the running event loop."""
    runner = web.AppRunner(echo_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    return EchoUpstream(url=f"http://{host}:{bound[1]}", runner=runner)


@contextlib.contextmanager
def echo_upstream_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The echo upstream on an event loop of its own thread, for synchronous callers
    (benchmarks, tests driving real gateway processes). Yields its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="echo-upstream", daemon=True)
    thread.start()
    try:
        starting = asyncio.run_coroutine_threadsafe(start_echo_upstream(host, port), loop)
        upstream = starting.result(10)
        try:
            yield upstream.url
        finally:
            asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
