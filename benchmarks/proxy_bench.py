"""Proxy throughput: requests/s through the gateway vs straight to the upstream.

    .venv/bin/python benchmarks/proxy_bench.py [--seconds 3] [--concurrency 32]

Starts, each in a process of its own on 127.0.0.1: a small aiohttp upstream, the gateway's
``Proxy`` under uvicorn with the aiohttp forwarding seam, and the same with an httpx seam for
comparison. Then loads each for ``--seconds`` with wrk when installed, else an aiohttp load
loop in this process, and prints requests/s and the ratio to the direct upstream. Measured:
a public route (the forwarding cost) and a scoped route (plus RS256 token validation; the
same token on every request, as a client sends it, so its signature is checked once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
import uvicorn
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import load_config  # noqa: E402
from gateway.errors import UpstreamTimeout, UpstreamUnavailable  # noqa: E402
from gateway.introspect.revocation import RevocationCache  # noqa: E402
from gateway.introspect.validator import BearerValidator  # noqa: E402
from gateway.keys import KeyRing, create_key  # noqa: E402
from gateway.proxy import Proxy  # noqa: E402
from gateway.proxy.forwarder import Forwarder, UpstreamResponse  # noqa: E402

ISSUER = "https://issuer.bench"
PAYLOAD = b'{"ok": true, "items": [1, 2, 3]}'


# --- the httpx seam, for comparison ------------------------------------------------------


class HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = tuple(response.headers.raw)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable("the upstream broke off its response") from exc

    def at_eof(self) -> bool:
        return False  # httpx only tells once the stream is exhausted: a final empty chunk

    def close(self) -> None:
        # the seam's close() is sync; httpx's is a coroutine: keep the task referenced
        self._closing = asyncio.ensure_future(self._response.aclose())


class HttpxForwarder(Forwarder):
    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def open(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        request = self._client.build_request(method, url, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable() from exc
        return cast(UpstreamResponse, HttpxResponse(response))


# --- the servers (each run as a child process) ---------------------------------------------


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


async def serve_upstream() -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=PAYLOAD, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket()
    await web.SockSite(runner, sock).start()
    print(sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def serve_gateway(config_path: str, seam: str) -> None:
    config = load_config(config_path)
    keyring = KeyRing(config.keys_dir)
    validator = BearerValidator(keyring, RevocationCache(), config.issuer, config.tokens.leeway)
    forwarder = HttpxForwarder(5.0) if seam == "httpx" else None
    proxy = Proxy(config, validator, forwarder)
    await proxy.startup()
    sock = listening_socket()
    server_config = uvicorn.Config(
        proxy, lifespan="off", proxy_headers=False, log_config=None, access_log=False
    )
    server_config.load()
    server = uvicorn.Server(server_config)
    server.lifespan = server_config.lifespan_class(server_config)
    await server.startup(sockets=[sock])
    print(sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()


def run_server(argv: list[str]) -> None:
    import uvloop

    if argv[0] == "upstream":
        uvloop.run(serve_upstream())
    else:
        uvloop.run(serve_gateway(argv[1], argv[2]))


@contextlib.contextmanager
def child(*args: str) -> Iterator[int]:
    """A server child process; yields its port, kills it on exit."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", *args], stdout=subprocess.PIPE, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()


# --- load ----------------------------------------------------------------------------------


def wrk(url: str, seconds: float, concurrency: int, token: str | None) -> float:
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    out = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", *header, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


async def aiohttp_load(url: str, seconds: float, concurrency: int, token: str | None) -> float:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(until: float) -> None:
            nonlocal done
            while time.perf_counter() < until:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: HTTP {response.status}")
                done += 1

        await asyncio.gather(*(worker(time.perf_counter() + 0.3) for _ in range(concurrency)))
        done = 0
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def measure(url: str, seconds: float, concurrency: int, token: str | None = None) -> float:
    if shutil.which("wrk"):
        return wrk(url, seconds, concurrency, token)
    return asyncio.run(aiohttp_load(url, seconds, concurrency, token))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    tool = "wrk" if shutil.which("wrk") else "aiohttp load loop"
    print(f"load: {tool}, {args.concurrency} connections, {args.seconds:g} s each", end="")
    print(f"; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp, child("upstream") as upstream_port:
        keys = Path(tmp) / "keys"
        create_key(keys, "RS256")
        now = int(time.time())
        token = KeyRing(keys).sign(
            {
                "iss": ISSUER,
                "aud": ISSUER,
                "sub": "bench",
                "client_id": "bench",
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + 3600,
                "scope": "bench:read",
            }
        )
        upstream = f"http://127.0.0.1:{upstream_port}"
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            f'issuer = "{ISSUER}"\n[keys]\ndir = "{keys}"\n'
            f'[[routes]]\npath = "/public"\npublic = true\nupstream = "{upstream}"\n'
            f'[[routes]]\npath = "/scoped"\nscopes = ["bench:read"]\nupstream = "{upstream}"\n'
        )
        direct = measure(f"{upstream}/public/x", args.seconds, args.concurrency)
        rows: list[tuple[str, float]] = [("direct to upstream", direct)]
        for seam in ("aiohttp", "httpx"):
            with child("gateway", str(config), seam) as port:
                base = f"http://127.0.0.1:{port}"
                rows.append(
                    (
                        f"gateway public ({seam})",
                        measure(f"{base}/public/x", args.seconds, args.concurrency),
                    )
                )
                rows.append(
                    (
                        f"gateway scoped ({seam})",
                        measure(f"{base}/scoped/x", args.seconds, args.concurrency, token),
                    )
                )
    for name, rate in rows:
        print(f"{name:28} {rate:9.0f} req/s   {rate / direct:6.2f}x direct")
    by_name: dict[str, Any] = dict(rows)
    ratio = by_name["gateway public (aiohttp)"] / by_name["gateway public (httpx)"]
    print(f"aiohttp seam vs httpx seam (public): {ratio:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        run_server(sys.argv[2:])
    else:
        main()
