"""A flood of wrong-password grants at a live gateway, and the requests that must keep
answering meanwhile: proxied requests and client_credentials grants, each sent one after the
other from a thread of its own for as long as the flood lasts.

Shared by ``tests/test_passwords_flood.py`` (every probe must succeed) and
``benchmarks/password_flood.py`` (their p50/p99 during the flood, and without it).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

TOKEN = "/oauth/token"
#: tables for ``running_gateway(extra_toml=...)``: the throttle would stop a flood from one
#: address after 5 guesses, before any reached Argon2; raise it so that every guess costs one
NO_THROTTLE = "\n[throttle]\nmax_failures = 1000000\n"


def flood_toml(upstream: str, max_concurrent: int, max_queued: int) -> str:
    """A public ``/echo`` route to ``upstream``, the password pool's bounds, no throttle."""
    return (
        NO_THROTTLE
        + f"\n[passwords]\nmax_concurrent = {max_concurrent}\nmax_queued = {max_queued}\n"
        + f'\n[[routes]]\npath = "/echo"\nupstream = "{upstream}"\npublic = true\n'
    )


@dataclass
class Probe:
    """One kind of request, sent back to back: its statuses and latencies in seconds."""

    name: str
    send: Callable[[httpx.Client], httpx.Response]
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def run(self, base_url: str, stop: threading.Event) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    status = self.send(client).status_code
                except httpx.TimeoutException:
                    status = 0  # counted, and failed by the test: no answer in 30 s
                self.latencies.append(time.perf_counter() - started)
                self.statuses.append(status)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.latencies)} requests, "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, "
            f"max {max(self.latencies, default=math.nan) * 1000:.1f} ms"
        )


def probes(client_id: str, client_secret: str) -> list[Probe]:
    def proxied(client: httpx.Client) -> httpx.Response:
        return client.get("/echo/orders")

    def client_credentials(client: httpx.Client) -> httpx.Response:
        form = {"grant_type": "client_credentials"}
        return client.post(TOKEN, data=form, auth=(client_id, client_secret))

    return [Probe("proxied", proxied), Probe("client_credentials", client_credentials)]


@dataclass
class Flood:
    responses: list[httpx.Response]
    probes: list[Probe]
    seconds: float


async def _guesses(
    base_url: str, client_id: str, client_secret: str, email: str, attempts: int
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=attempts, max_keepalive_connections=attempts)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def guess(n: int) -> httpx.Response:
            form = {"grant_type": "password", "username": email, "password": f"guess-{n}"}
            return await client.post(TOKEN, data=form, auth=(client_id, client_secret))

        return await asyncio.gather(*(guess(n) for n in range(attempts)))


def measure(
    base_url: str,
    client_id: str,
    client_secret: str,
    email: str,
    attempts: int,
    idle_seconds: float = 0.0,
) -> Flood:
    """Run the probes while ``attempts`` wrong-password grants are sent at once (or, with
    ``attempts=0``, for ``idle_seconds``: the same probes without a flood)."""
    stop = threading.Event()
    running = probes(client_id, client_secret)
    threads = [threading.Thread(target=p.run, args=(base_url, stop)) for p in running]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    try:
        if attempts:
            responses = asyncio.run(_guesses(base_url, client_id, client_secret, email, attempts))
        else:
            responses = []
            time.sleep(idle_seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return Flood(responses, running, time.perf_counter() - started)
