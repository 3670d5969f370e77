"""Revocation propagation delay between two gateway replicas sharing one PostgreSQL database.

Two real ``gateway serve`` processes (A and B) run with a route to an echo upstream. For each
sample: a token is issued (client_credentials) and seen accepted by B's proxy; it is revoked
through A's ``/oauth/revoke``; the delay is the time from A's answer (the revocation is
committed) until B's proxy first refuses the token. Measured with LISTEN/NOTIFY and with
polling alone (``[revocation] notify = false``), both with ``sync_interval = 1.0``.

    .venv/bin/python benchmarks/revocation_propagation.py [--samples 200] [--database-url URL]

Network only to 127.0.0.1; bounded in samples and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import free_port  # noqa: E402
from gateway import accounts  # noqa: E402
from gateway.cli.setup import init  # noqa: E402
from gateway.config import Config, DatabaseConfig, KeysConfig  # noqa: E402
from gateway.demo.echo import echo_upstream_thread  # noqa: E402
from tests.support.databases import scratch_database  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SYNC_INTERVAL = 1.0
MAX_WAIT = 10.0  # a sample that takes longer is a failure, not a number


def write_config(folder: Path, port: int, db_url: str, upstream: str, notify: bool) -> Path:
    path = folder / f"replica-{port}.toml"
    path.write_text(
        f"""issuer = "http://127.0.0.1:8000"
[database]
url = {json.dumps(db_url)}
[keys]
dir = {json.dumps(str(folder / "keys"))}
[revocation]
sync_interval = {SYNC_INTERVAL}
notify = {"true" if notify else "false"}
[[routes]]
path = "/api"
upstream = {json.dumps(upstream)}
scopes = ["bench"]
"""
    )
    return path


@contextlib.contextmanager
def replica(config: Path, port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"replica on port {port} did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(15)


def measure(samples: int, notify: bool, admin_url: str, upstream: str) -> list[float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database(admin_url, prefix="gateway_bench") as db_url,
    ):
        folder = Path(tmp)
        config = Config(
            database=DatabaseConfig(url=db_url),
            keys=KeysConfig(dir=str(folder / "keys")),
            base_dir=str(folder),
        )
        storage = init(config)
        with storage.session() as session:
            new = accounts.create_client(
                session, "bench", [], ["client_credentials"], "bench", "client_secret_basic"
            )
        storage.dispose()
        auth = (new.client.client_id, new.client_secret or "")
        port_a, port_b = free_port(), free_port()
        cfg_a = write_config(folder, port_a, db_url, upstream, notify)
        cfg_b = write_config(folder, port_b, db_url, upstream, notify)
        delays = []
        with replica(cfg_a, port_a) as a, replica(cfg_b, port_b) as b, httpx.Client() as http:
            for _ in range(samples):
                issued = http.post(
                    f"{a}/oauth/token", data={"grant_type": "client_credentials"}, auth=auth
                )
                if issued.status_code != 200:
                    raise SystemExit(f"token request failed: {issued.text}")
                token = issued.json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                if http.get(f"{b}/api/x", headers=headers).status_code != 200:
                    raise SystemExit("replica B refused a fresh token")
                # revocations arrive at random moments, not in step with B's polling
                time.sleep(random.uniform(0, SYNC_INTERVAL))
                http.post(f"{a}/oauth/revoke", data={"token": token}, auth=auth).raise_for_status()
                committed = time.perf_counter()
                while http.get(f"{b}/api/x", headers=headers).status_code == 200:
                    if time.perf_counter() - committed > MAX_WAIT:
                        raise SystemExit("a revocation did not reach replica B in time")
                delays.append(time.perf_counter() - committed)
        return delays


def summary(delays: list[float]) -> dict[str, float]:
    ordered = sorted(delays)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--database-url", default=os.environ.get("GATEWAY_BENCH_DATABASE_URL", DEFAULT_URL)
    )
    args = parser.parse_args()
    results = {}
    with echo_upstream_thread() as upstream:
        for mode, notify in (("notify", True), ("polling", False)):
            results[mode] = summary(measure(args.samples, notify, args.database_url, upstream))
            row = results[mode]
            print(
                f"{mode:8} samples={args.samples} p50={row['p50_ms']:.1f} ms "
                f"p99={row['p99_ms']:.1f} ms max={row['max_ms']:.1f} ms",
                flush=True,
            )
    ratio = results["polling"]["p50_ms"] / max(results["notify"]["p50_ms"], 1e-6)
    print(f"polling / notify (p50): {ratio:.1f}x")


if __name__ == "__main__":
    main()
