"""Memory and load time of the revocation sets holding 1,000,000 revoked ``jti``s.

    .venv/bin/python -m benchmarks.revocation_memory [--rows 1000000]

Fills the revocations table of a scratch SQLite database (one transaction, executemany), then
in a fresh process measures the RSS growth and the time of ``RevocationCache().sync(storage,
full=True)``, the peak RSS over it, a second full reload over the loaded sets (what the
periodic reload costs), the longest event-loop stall while a reload runs in a thread, and the
cost of ``is_revoked`` (a hit and a miss) at that size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.introspect.revocation import RevocationCache
from gateway.storage import Storage, upgrade_schema

ROWS = 1_000_000
#: spread of the entries' expiry times: the default access-token lifetime plus leeway
HORIZON = 630.0


def fill(url: str, rows: int) -> float:
    """Insert ``rows`` jti revocations in one transaction; returns the seconds it took."""
    storage = Storage(url)
    upgrade_schema(storage.engine)
    now = time.time()
    rand = random.Random(7)
    started = time.perf_counter()
    values = [
        ("jti", f"{rand.getrandbits(128):032x}", now, now + rand.uniform(60.0, HORIZON))
        for _ in range(rows)
    ]
    with storage.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO revocations (kind, value, not_before, expires_at) VALUES (?, ?, ?, ?)",
            values,
        )
    storage.dispose()
    return time.perf_counter() - started


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


async def _loop_stall_during(job: Any) -> tuple[float, float]:
    """Run ``job`` in a thread; return (its seconds, the event loop's longest stall)."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    started = time.perf_counter()
    future = loop.run_in_executor(None, job)
    while not future.done():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - before - 0.001)
    await future
    return time.perf_counter() - started, worst


def measure(url: str) -> dict[str, Any]:
    """In this (fresh) process: load the sets from ``url`` and report what it cost."""
    storage = Storage(url)
    with storage.session() as session:  # connect (and import the driver) before measuring
        session.connection()
    cache = RevocationCache()
    gc.collect()
    rss_before = _status_kib("VmRSS")
    started = time.perf_counter()
    loaded = cache.sync(storage, full=True)
    load_s = time.perf_counter() - started
    rss_after = _status_kib("VmRSS")
    peak_load = _status_kib("VmHWM")
    started = time.perf_counter()
    cache.sync(storage, full=True)
    reload_s = time.perf_counter() - started
    peak_reload = _status_kib("VmHWM")
    rss_reloaded = _status_kib("VmRSS")
    _, stall = asyncio.run(_loop_stall_during(lambda: cache.sync(storage, full=True)))
    started = time.perf_counter()
    cache.sync(storage)
    incremental_s = time.perf_counter() - started
    jti = next(iter(_some_jti(storage)))
    hit = timeit.timeit(lambda: cache.is_revoked(jti, "sid", "sub", 0.0), number=200_000)
    miss = timeit.timeit(lambda: cache.is_revoked("x" * 32, "sid", "sub", 0.0), number=200_000)
    storage.dispose()
    return {
        "rows": loaded,
        "entries": len(cache),
        "load_s": load_s,
        "rss_growth_mb": (rss_after - rss_before) / 1024,
        "peak_growth_mb": (peak_load - rss_before) / 1024,
        "reload_s": reload_s,
        "reload_peak_growth_mb": (peak_reload - rss_before) / 1024,
        "rss_after_reloads_mb": (rss_reloaded - rss_before) / 1024,
        "reload_loop_stall_ms": stall * 1000,
        "incremental_sync_ms": incremental_s * 1000,
        "is_revoked_hit_ns": hit / 200_000 * 1e9,
        "is_revoked_miss_ns": miss / 200_000 * 1e9,
    }


def _some_jti(storage: Storage) -> list[str]:
    with storage.engine.connect() as conn:
        return [str(conn.exec_driver_sql("SELECT value FROM revocations LIMIT 1").scalar())]


#: (key, label, unit) of the figures, in the order they are reported
FIGURES = (
    ("fill_s", "insert the rows (executemany, one transaction)", "s"),
    ("load_s", "RevocationCache().sync(storage, full=True)", "s"),
    ("rss_growth_mb", "RSS growth over that load", "MB"),
    ("peak_growth_mb", "peak RSS growth during it", "MB"),
    ("reload_s", "a full reload over the loaded sets (every 60 s)", "s"),
    ("reload_peak_growth_mb", "peak RSS growth after that reload", "MB"),
    ("reload_loop_stall_ms", "longest event-loop stall while a reload runs", "ms"),
    ("incremental_sync_ms", "an incremental sync (nothing new)", "ms"),
    ("is_revoked_hit_ns", "is_revoked, a jti hit", "ns"),
    ("is_revoked_miss_ns", "is_revoked, a miss on all three sets", "ns"),
)


def run(rows: int = ROWS, pin: Sequence[str] = ()) -> dict[str, Any]:
    """Fill a scratch database, then measure in a fresh process (run under ``pin``, a command
    prefix such as ``taskset -c 0``). Returns the figures."""
    with tempfile.TemporaryDirectory(prefix="gateway-bench-revocations-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'revocations.db'}"
        fill_s = fill(url, rows)
        out = subprocess.run(
            [*pin, sys.executable, "-m", "benchmarks.revocation_memory", "--measure", url],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["fill_s"] = fill_s
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    figures = run(args.rows)
    print(f"{figures['rows']:,} revoked jtis")
    for key, label, unit in FIGURES:
        print(f"  {label:52} {figures[key]:10.2f} {unit}")


if __name__ == "__main__":
    main()
