"""What the access log costs per request, on the event loop (a micro-benchmark).

    .venv/bin/python -m benchmarks.access_log [--requests 100000]

Requests finish in batches of 32 per loop iteration (wrk -c32), each filling a
``RequestContext`` the way the proxy does for a scoped route (request id, route, upstream
status and time, client, subject, bytes) and writing its line; the buffer goes to /dev/null
once per iteration, as in the gateway. Figures, in µs per request (best of 5 runs): the
request's context alone (paid with the log off too), the line built and written (JSON,
text), and, for comparison, the same line through ``logging`` (a ``StreamHandler`` with a
formatter calling ``json.dumps``), the option the gateway does not take.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from typing import Any

from gateway.accesslog import AccessLog
from gateway.context import RequestContext

BATCH = 32
REPEATS = 5
SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "GET",
    "path": "/scoped/x",
    "raw_path": b"/scoped/x",
    "client": ("127.0.0.1", 50000),
}
#: figure key, label
FIGURES = (
    ("entry_us", "request context (log off too)"),
    ("json_us", "JSON line built and written"),
    ("text_us", "text line built and written"),
    ("logging_us", "for comparison: the JSON line through logging"),
)


def _entry() -> RequestContext:
    entry = RequestContext(SCOPE, None, lambda _: False)
    entry.route = "scoped"
    entry.client_id, entry.sub = "kT3bq0cW1yJx", "285ef09a4be14c6f9f3b2e07a1c1d0aa"
    entry.upstream_answered(200)
    entry.bytes_out = 612
    return entry


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: RequestContext = record.__dict__["entry"]
        return json.dumps(
            {
                "time": self.formatTime(record),
                "request_id": entry.request_id.decode(),
                "route": entry.route,
                "method": SCOPE["method"],
                "path": SCOPE["path"],
                "status": entry.status,
                "duration_ms": (time.perf_counter() - entry.started) * 1000,
                "upstream_status": entry.upstream_status,
                "upstream_ms": entry.upstream_ms,
                "client_id": entry.client_id,
                "sub": entry.sub,
                "reason": entry.reason,
                "bytes_in": entry.bytes_in,
                "bytes_out": entry.bytes_out,
            }
        )


async def _per_request(requests: int, finish: Any) -> float:
    """µs per request of ``finish(entry)`` plus the entry, in batches of ``BATCH`` a turn; the
    best of ``REPEATS`` runs (what other processes on the machine take only adds to it)."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(requests // BATCH):
            for _ in range(BATCH):
                finish(_entry())
            await asyncio.sleep(0)
        best = min(best, time.perf_counter() - started)
    return best / (requests // BATCH * BATCH) * 1e6


def run(requests: int = 100_000) -> dict[str, float]:
    with open(os.devnull, "w") as sink:
        fd = sink.fileno()
        logs = {name: AccessLog(name, fd) for name in ("json", "text")}
        logger = logging.getLogger("benchmarks.access_log")
        logger.propagate = False
        handler = logging.StreamHandler(sink)
        handler.setFormatter(_JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

        async def main() -> dict[str, float]:
            base = await _per_request(requests, lambda entry: None)
            json_us = await _per_request(requests, lambda e: logs["json"].write(e))
            text_us = await _per_request(requests, lambda e: logs["text"].write(e))
            logging_us = await _per_request(requests, lambda e: logger.info("", extra={"entry": e}))
            return {
                "entry_us": base,
                "json_us": json_us - base,
                "text_us": text_us - base,
                "logging_us": logging_us - base,
            }

        return asyncio.run(main())


def report(figures: dict[str, float]) -> None:
    print(f"\nAccess log, per request (micro-benchmark, {BATCH} requests per loop iteration)")
    for key, label in FIGURES:
        print(f"  {label:52} {figures[key]:10.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    report(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
