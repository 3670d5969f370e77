"""The listener's cost on the request path: the gateway's protocol (``gateway/listener.py``)
against uvicorn's stock httptools protocol.

    .venv/bin/python -m benchmarks.listener [--requests 64000]
    .venv/bin/python -m benchmarks.listener serve --config C --port P
    .venv/bin/python -m benchmarks.listener count --protocol gateway --requests N

The first is the micro-benchmark ``make bench`` runs: 32 connections of each protocol on a
uvloop loop, each fed a scoped route's request (a bearer token of a real token's length) per
loop iteration and answered at once by a bare ASGI app, the transport discarding what is
written: CPU µs per request for each protocol (the best of 5 runs) and the difference; and,
where valgrind is installed, the instructions per request each executes (callgrind, from two
``count`` runs of different lengths, so that start-up cancels out): repeatable where time is
not, on a machine others use too.

``serve`` runs the gateway as ``gateway serve`` does with one worker, but on uvicorn's stock
protocol: ``make bench``'s ``scoped-1w-stock``, the same route measured against ``scoped-1w``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.config import Config, load_config
from gateway.listener import ConnectionLimits, GatewayProtocol

BATCH = 32
REPEATS = 5
#: what wrk sends for the scoped route (a token of the length the bench's tokens have)
REQUEST = (
    b"GET /scoped/x HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAuthorization: Bearer "
    + b"e" * 780
    + b"\r\n\r\n"
)
PROTOCOLS: dict[str, type[HttpToolsProtocol]] = {
    "gateway": GatewayProtocol,
    "stock": HttpToolsProtocol,
}
#: requests in the two callgrind runs whose difference is measured
COUNTED = (2_000, 7_000)
#: figure key, label
FIGURES = (
    ("stock_us", "uvicorn's httptools protocol, CPU µs per request"),
    ("gateway_us", "the gateway's protocol, CPU µs per request"),
    ("added_us", "added by the gateway's protocol, µs per request"),
    ("stock_ir", "uvicorn's httptools protocol, instructions per request"),
    ("gateway_ir", "the gateway's protocol, instructions per request"),
    ("added_ir", "added by the gateway's protocol, instructions per request"),
)


class _Discard(asyncio.Transport):
    """A connection whose writes go nowhere."""

    _extra: ClassVar[dict[str, Any]] = {
        "sockname": ("127.0.0.1", 8000),
        "peername": ("127.0.0.1", 50000),
    }

    def __init__(self) -> None:
        super().__init__()
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Answer:
    """A bare ASGI app answering 200 at once, with the limits the listener's protocol reads."""

    START: ClassVar[dict[str, Any]] = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-length", b"2")],
    }
    BODY: ClassVar[dict[str, Any]] = {"type": "http.response.body", "body": b"ok"}

    def __init__(self) -> None:
        self.connection_limits = ConnectionLimits(Config(), lambda _: None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(self.START)
        await send(self.BODY)


async def _serve(protocol: type[HttpToolsProtocol], requests: int, repeats: int) -> float:
    """CPU seconds per request, the best of ``repeats`` runs of ``requests`` over ``BATCH``
    connections (each iteration: one request per connection, then their answers)."""
    config = uvicorn.Config(
        _Answer(), lifespan="off", log_config=None, access_log=False, proxy_headers=False
    )
    config.load()
    state, loop = ServerState(), asyncio.get_running_loop()
    connections = [protocol(config, state, {}, loop) for _ in range(BATCH)]
    for connection in connections:
        connection.connection_made(_Discard())
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(requests // BATCH):
            for connection in connections:
                connection.data_received(REQUEST)
            await asyncio.sleep(0)  # each connection's request is answered
        best = min(best, time.process_time() - started)
    if any(not c.cycle.response_complete for c in connections):
        raise RuntimeError("a request was left unanswered: the loop measured something else")
    for connection in connections:
        connection.connection_lost(None)
    return best / (requests // BATCH * BATCH)


def per_request(protocol: str, requests: int, repeats: int = REPEATS) -> float:
    return uvloop.run(_serve(PROTOCOLS[protocol], requests, repeats))


def instructions(protocol: str, requests: int, folder: Path) -> int:
    """Instructions a ``count`` run of ``requests`` executes, start-up included (callgrind)."""
    out = folder / f"callgrind-{protocol}-{requests}.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-m", "benchmarks.listener", "count"]
    command += ["--protocol", protocol, "--requests", str(requests)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(command, check=True, capture_output=True, env=env)
    found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if found is None:
        raise RuntimeError(f"no instruction count in {out}")
    return int(found.group(1))


def run(requests: int = 64_000) -> dict[str, float]:
    figures = {name + "_us": per_request(name, requests) * 1e6 for name in PROTOCOLS}
    figures["added_us"] = figures["gateway_us"] - figures["stock_us"]
    if shutil.which("valgrind") is not None:
        with tempfile.TemporaryDirectory(prefix="gateway-callgrind-") as tmp:
            for name in PROTOCOLS:
                few, many = (instructions(name, n, Path(tmp)) for n in COUNTED)
                figures[name + "_ir"] = (many - few) / (COUNTED[1] - COUNTED[0])
        figures["added_ir"] = figures["gateway_ir"] - figures["stock_ir"]
    return figures


def report(figures: dict[str, float]) -> None:
    print(f"\nListener, per request (micro-benchmark, {BATCH} connections, a scoped request)")
    for key, label in FIGURES:
        if key in figures:
            unit = "µs" if key.endswith("_us") else "instructions"
            print(f"  {label:60} {figures[key]:10.2f} {unit}")
    if "added_ir" not in figures:
        print("  instructions: SKIPPED (valgrind is not installed)")


def serve_stock(config_path: str, port: int) -> None:
    """The gateway on uvicorn's stock protocol, otherwise as ``gateway serve`` runs it."""
    from gateway.app import create_app
    from gateway.serve import uvicorn_options

    logging.basicConfig(level=logging.INFO)
    options = {**uvicorn_options("127.0.0.1", port), "http": "httptools"}
    uvicorn.run(create_app(load_config(config_path), freeze_heap=True), **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["bench", "serve", "count"], default="bench")
    parser.add_argument("--requests", type=int, default=64_000)
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="gateway")
    parser.add_argument("--config")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.mode == "serve":
        serve_stock(args.config, args.port)
    elif args.mode == "count":
        per_request(args.protocol, args.requests, repeats=1)
    else:
        report(run(args.requests))


if __name__ == "__main__":
    main()
