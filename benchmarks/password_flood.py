"""What a flood of password work does to everything else.

A real ``gateway serve`` (SQLite, real Argon2id: 64 MiB, 4 lanes) with a public ``/echo`` route
to the demo's echo upstream. Proxied requests and client_credentials grants are sent back to
back, one of each at a time, and their latencies printed for three runs:

* ``idle``: no flood, the reference;
* ``bounded``: ``--attempts`` wrong-password grants at once, ``[passwords]`` at the bounds given
  (default: the CPU count and 4 x that); the rest are refused with 503;
* ``wide``: the same flood with bounds too wide to refuse any of it (40 running, as many as
  the issuer's threadpool ran before the pool existed; 10000 queued): every guess is verified.

Run standalone (not part of ``make bench``; figures are printed, never asserted)::

    .venv/bin/python -m benchmarks.password_flood [--attempts 200] [--max-concurrent N]
        [--max-queued M] [--only idle,bounded,wide]

It reuses the live tests' server fixture (``tests/support/live.py``) and flood driver
(``tests/support/flood.py``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

from gateway.demo.echo import echo_upstream_thread
from tests.support.flood import flood_toml, measure
from tests.support.live import running_gateway

RUNS = ("idle", "bounded", "wide")


def run(name: str, folder: Path, upstream: str, attempts: int, bounds: tuple[int, int]) -> None:
    database_url = f"sqlite:///{folder / 'gateway.db'}"
    extra = flood_toml(upstream, *bounds)
    with running_gateway(folder, database_url, extra_toml=extra) as gateway:
        email = gateway.create_user("victim@example.com")
        app = gateway.create_client("Flooded app", grant_types=("password", "client_credentials"))
        # warm-up: connections, the first token, Authlib's and SQLAlchemy's first calls
        measure(gateway.base_url, app["client_id"], app["client_secret"], email, 0, 0.5)
        flood = measure(
            gateway.base_url,
            app["client_id"],
            app["client_secret"],
            email,
            0 if name == "idle" else attempts,
            idle_seconds=3.0,
        )
    answers = Counter(r.status_code for r in flood.responses)
    what = f"{attempts} guesses" if name != "idle" else "no flood"
    print(f"\n{name} ({what}, max_concurrent={bounds[0]}, max_queued={bounds[1]}):")
    print(f"  {flood.seconds:.2f} s; guesses answered {dict(sorted(answers.items()))}")
    for probe in flood.probes:
        failed = sum(1 for s in probe.statuses if s != 200)
        print(f"  {probe.summary()}, {failed} not 200")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--max-concurrent", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-queued", type=int, default=None)
    parser.add_argument(
        "--only", default=",".join(RUNS), help="comma-separated: " + ", ".join(RUNS)
    )
    args = parser.parse_args()
    queued = 4 * args.max_concurrent if args.max_queued is None else args.max_queued
    bounds = {
        "idle": (args.max_concurrent, queued),
        "bounded": (args.max_concurrent, queued),
        "wide": (40, 10_000),
    }
    with echo_upstream_thread() as upstream, tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            run(name, Path(tmp) / name, upstream, args.attempts, bounds[name])


if __name__ == "__main__":
    main()
