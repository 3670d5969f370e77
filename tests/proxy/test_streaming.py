"""Bodies stream both ways without being buffered whole; server-sent events are not delayed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tests.support.proxy import CONFIG_HEAD, GatewayFactory

Serve = Callable[[web.Application], Awaitable[str]]

MiB = 1024 * 1024
BLOCK = os.urandom(MiB)
MEMORY_BUDGET = 50 * MiB


async def blocks(size: int) -> AsyncIterator[bytes]:
    for start in range(0, size, MiB):
        yield BLOCK[: min(MiB, size - start)]


def expected_digest(size: int) -> str:
    digest = hashlib.sha256()
    for start in range(0, size, MiB):
        digest.update(BLOCK[: min(MiB, size - start)])
    return digest.hexdigest()


async def upload(request: web.Request) -> web.Response:
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"sha256": digest.hexdigest(), "bytes": size})


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    response = web.StreamResponse()
    response.content_length = size
    await response.prepare(request)
    async for block in blocks(size):
        await response.write(block)
    return response


def transfer_app() -> web.Application:
    app = web.Application(client_max_size=0)
    app.router.add_post("/upload", upload)
    app.router.add_get("/download", download)
    return app


def peak_rss(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of ``pid`` in bytes, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


@pytest.fixture
async def gateway_process(
    tmp_path: Path, keys_dir: Path, serve: Serve
) -> AsyncIterator[tuple[int, int]]:
    """A gateway in a child process, in front of the transfer upstream: (pid, port)."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG_HEAD
        + f'[keys]\ndir = "{keys_dir}"\n'
        + f'[[routes]]\npath = "/"\npublic = true\nupstream = "{await serve(transfer_app())}"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.gateway_process",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert process.stdout is not None and process.stdin is not None
    port = int(await process.stdout.readline())
    yield process.pid, port
    process.stdin.close()
    await process.wait()


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(200 * MiB, id="200MiB"),
        pytest.param(
            1024 * MiB,
            id="1GiB",
            marks=pytest.mark.skipif(
                os.environ.get("GATEWAY_TEST_LARGE") != "1", reason="set GATEWAY_TEST_LARGE=1"
            ),
        ),
    ],
)
async def test_large_bodies_stream_both_ways_in_bounded_memory(
    gateway_process: tuple[int, int], size: int
) -> None:
    pid, port = gateway_process
    timeout = httpx.Timeout(60)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as client:
        warm = await client.post("/upload", content=blocks(4 * MiB))
        assert warm.status_code == 200
        async with client.stream("GET", "/download", params={"size": 4 * MiB}) as response:
            async for _ in response.aiter_raw():
                pass
        baseline, _ = peak_rss(pid)

        uploaded = await client.post("/upload", content=blocks(size))
        assert uploaded.json() == {"sha256": expected_digest(size), "bytes": size}

        digest, received = hashlib.sha256(), 0
        async with client.stream("GET", "/download", params={"size": size}) as response:
            async for chunk in response.aiter_raw():
                digest.update(chunk)
                received += len(chunk)
        assert (received, digest.hexdigest()) == (size, expected_digest(size))

    _, peak = peak_rss(pid)
    assert peak - baseline < MEMORY_BUDGET, f"gateway grew by {(peak - baseline) / MiB:.1f} MiB"


async def test_server_sent_events_arrive_as_sent(gateway: GatewayFactory, serve: Serve) -> None:
    """Event 1 reaches the client before the upstream sends event 2 (it waits for the ack)."""
    ack = asyncio.Event()

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"id: 1\ndata: one\n\n")
        await ack.wait()
        await response.write(b"id: 2\ndata: two\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    gw = await gateway(f'[[routes]]\npath = "/"\npublic = true\nupstream = "{await serve(app)}"\n')
    async with asyncio.timeout(5), gw.client.stream("GET", "/events") as response:
        assert response.headers["content-type"] == "text/event-stream"
        raw = response.aiter_raw()
        assert await anext(raw) == b"id: 1\ndata: one\n\n"
        ack.set()
        assert b"".join([chunk async for chunk in raw]) == b"id: 2\ndata: two\n\n"


#: a transfer that lasts several times the route's timeout, with pauses well inside idle_timeout:
#: only a (forbidden) whole-transfer timeout could cut it. The pauses are the behaviour under
#: test (time passing while bytes trickle), not a wait for an event.
PAUSE, PIECES = 0.1, 6
SLOW_ROUTE = '[proxy]\nidle_timeout = 2\n[[routes]]\npath = "/"\npublic = true\ntimeout = 0.2\n'


async def trickle() -> AsyncIterator[bytes]:
    for n in range(PIECES):
        if n:
            await asyncio.sleep(PAUSE)
        yield b"piece %d\n" % n


async def test_a_slow_stream_outlasts_the_route_timeout(
    gateway: GatewayFactory, serve: Serve
) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        async for piece in trickle():
            await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/slow", slow)
    gw = await gateway(SLOW_ROUTE + f'upstream = "{await serve(app)}"\n')
    response = await gw.client.get("/slow", timeout=10)
    assert response.status_code == 200
    assert response.content == b"".join(b"piece %d\n" % n for n in range(PIECES))


async def test_a_slow_upload_outlasts_the_route_timeout(
    gateway: GatewayFactory, serve: Serve
) -> None:
    gw = await gateway(SLOW_ROUTE + f'upstream = "{await serve(transfer_app())}"\n')
    response = await gw.client.post("/upload", content=trickle(), timeout=10)
    assert response.status_code == 200
    expected = b"".join(b"piece %d\n" % n for n in range(PIECES))
    assert response.json() == {
        "sha256": hashlib.sha256(expected).hexdigest(),
        "bytes": len(expected),
    }
