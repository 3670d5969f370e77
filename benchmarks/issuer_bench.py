"""Issuer throughput: tokens/s at the token endpoint and answers/s at introspection.

    .venv/bin/python benchmarks/issuer_bench.py [--scenario NAME ...] [--seconds 8]
        [--connections 16] [--database-url URL] [--source DIR] [--json]

Starts one ``gateway serve`` (one uvicorn worker) pinned to ``--server-cpu`` with
``taskset``, on a fresh database: a SQLite file (default) or, with ``--database-url`` naming
a PostgreSQL server, a scratch database on it, dropped after. wrk, pinned to ``--load-cpu``,
then posts for ``--seconds`` per scenario, with the Lua scripts in ``benchmarks/lua/``:

- ``client_credentials``: HTTP Basic, one client (RFC 6749 §4.4);
- ``refresh_token``: rotating refresh tokens, each used once (RFC 6749 §6), one chain per
  connection and a few spare (a chain whose refresh fails ends);
- ``introspect``: a resource server introspecting 256 client_credentials tokens in turn
  (RFC 7662).

Each prints requests/s, the requests answered other than 2xx/3xx and wrk's socket errors (a
run with any of either is a failure, not a number), wrk's latency percentiles, and the
server's CPU use over the run (near 100%: its core was the limit; well below: it waited, on
the disk or on another process using its core). ``--source DIR`` runs the gateway package
from another checkout (e.g. a ``git worktree`` of the previous commit), for a reference run in
the same minute on the same machine. Network only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.databases import scratch_database  # noqa: E402

LUA = Path(__file__).resolve().parent / "lua"
SCENARIOS = ("client_credentials", "refresh_token", "introspect")
EMAIL = "bench@example.com"
PASSWORD = "bench-password-123"
INTROSPECTED_TOKENS = 256
#: refresh chains beyond one per connection, so a few failures do not starve the load
SPARE_CHAINS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@contextlib.contextmanager
def database(url: str | None, folder: Path) -> Iterator[str]:
    if url is None:
        yield f"sqlite:///{folder / 'gateway.db'}"
    else:
        with scratch_database(url, prefix="gateway_bench") as scratch:
            yield scratch


def gateway_command(source: Path | None) -> tuple[list[str], dict[str, str]]:
    """How to run ``gateway``: the installed one, or ``source``'s package ahead of it."""
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    if source is None:
        return [str(ROOT / ".venv" / "bin" / "gateway")], env
    return [sys.executable, "-m", "gateway"], {**env, "PYTHONPATH": str(source)}


def cli(folder: Path, source: Path | None, *args: str, stdin: str = "") -> str:
    command, env = gateway_command(source)
    done = subprocess.run(
        [*command, "--config", str(folder / "gateway.toml"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"gateway {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def prepare(folder: Path, db_url: str, source: Path | None) -> dict[str, str]:
    """Through the CLI, as an operator would: schema, key, a client for every grant, a
    resource server and one user (each password grant starts a refresh chain of its own)."""
    keys = json.dumps(str(folder / "keys"))
    (folder / "gateway.toml").write_text(
        f"[database]\nurl = {json.dumps(db_url)}\n[keys]\ndir = {keys}\n"
    )
    cli(folder, source, "init")
    grants = ["client_credentials", "password", "refresh_token"]
    app = json.loads(
        cli(
            folder, source, "client", "create", "--name", "bench", "--scope", "bench", "--json",
            *(f"--grant-type={grant}" for grant in grants),
        )
    )  # fmt: skip
    rs = json.loads(
        cli(
            folder, source, "client", "create", "--name", "rs", "--introspect", "--json",
            "--grant-type=client_credentials",
        )
    )  # fmt: skip
    cli(folder, source, "user", "create", "--email", EMAIL, "--password-stdin", stdin=PASSWORD)
    return {
        "app": basic(app["client_id"], app["client_secret"]),
        "rs": basic(rs["client_id"], rs["client_secret"]),
    }


@dataclass(frozen=True)
class Served:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(folder: Path, cpu: int, source: Path | None) -> Iterator[Served]:
    port = free_port()
    command, env = gateway_command(source)
    command += ["--config", str(folder / "gateway.toml"), "serve", "--port", str(port)]
    log = folder / "server.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            ["taskset", "-c", str(cpu), *command],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=folder,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"the gateway did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield Served(base, process.pid)
    finally:
        process.terminate()
        process.wait(15)


def fetch_all(requests: list[tuple[str, dict[str, str], str]], key: str) -> list[str]:
    """POST every ``(url, form, authorization)`` (a few at a time); ``key`` of each answer."""
    with httpx.Client(timeout=60) as http:

        def post(item: tuple[str, dict[str, str], str]) -> str:
            url, form, auth = item
            answer = http.post(url, data=form, headers={"Authorization": auth})
            if answer.status_code != 200:
                raise SystemExit(f"setup request failed: {answer.status_code} {answer.text}")
            return str(answer.json()[key])

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            return list(pool.map(post, requests))


def wrk(
    served: Served, path: str, script: str, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """One wrk run; ``cpu`` is the server's CPU use over it (1.0: its core was saturated)."""
    command = [
        "taskset", "-c", str(args.load_cpu), "wrk", "-t1", f"-c{args.connections}",
        f"-d{args.seconds}s", "--latency", "-s", str(LUA / script), served.base + path,
    ]  # fmt: skip
    cpu, started = served.cpu_seconds(), time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    cpu = (served.cpu_seconds() - cpu) / (time.monotonic() - started)
    out = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode != 0 or rate is None or total is None:
        raise SystemExit(f"wrk failed:\n{out}{done.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p50, p99 = (re.search(rf"\s{p}%\s+(\S+)", out) for p in ("50", "99"))
    return {
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "p50": p50.group(1) if p50 else "?",
        "p99": p99.group(1) if p99 else "?",
        "cpu": round(cpu, 2),
    }


def run(
    scenario: str, served: Served, folder: Path, creds: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    token_url = f"{served.base}/oauth/token"
    env = {"ISSUER_BENCH_AUTH": creds["app"]}
    if scenario == "client_credentials":
        return wrk(served, "/oauth/token", "issuer_client_credentials.lua", env, args)
    tokens_file = folder / f"{scenario}.tokens"
    if scenario == "refresh_token":
        form = {"grant_type": "password", "username": EMAIL, "password": PASSWORD}
        chains = [(token_url, form, creds["app"])] * (args.connections + SPARE_CHAINS)
        tokens_file.write_text("\n".join(fetch_all(chains, "refresh_token")) + "\n")
        env["ISSUER_BENCH_TOKENS"] = str(tokens_file)
        return wrk(served, "/oauth/token", "issuer_refresh_token.lua", env, args)
    issue = [(token_url, {"grant_type": "client_credentials"}, creds["app"])]
    tokens_file.write_text("\n".join(fetch_all(issue * INTROSPECTED_TOKENS, "access_token")))
    env = {"ISSUER_BENCH_AUTH": creds["rs"], "ISSUER_BENCH_TOKENS": str(tokens_file)}
    return wrk(served, "/oauth/introspect", "issuer_introspect.lua", env, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, dest="scenarios")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database-url", help="a PostgreSQL server (default: a SQLite file)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--source", type=Path, help="run the gateway package from this checkout")
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("needs wrk and taskset")
    scenarios = args.scenarios or list(SCENARIOS)
    kind = "postgresql" if args.database_url else "sqlite"
    failed = False
    with tempfile.TemporaryDirectory() as tmp, database(args.database_url, Path(tmp)) as db_url:
        folder = Path(tmp)
        creds = prepare(folder, db_url, args.source)
        with server(folder, args.server_cpu, args.source) as served:
            for scenario in scenarios:
                result = {
                    "scenario": scenario,
                    "database": kind,
                    **run(scenario, served, folder, creds, args),
                }
                failed |= bool(result["non_2xx"] or result["socket_errors"])
                if args.json:
                    print(json.dumps(result), flush=True)
                else:
                    unit = "answers/s" if scenario == "introspect" else "tokens/s"
                    print(
                        f"{scenario:18} {kind:10} {unit}={result['rate']:8.1f}  "
                        f"requests={result['requests']}  non-2xx={result['non_2xx']}  "
                        f"socket-errors={result['socket_errors']}  "
                        f"p50={result['p50']}  p99={result['p99']}  server-cpu={result['cpu']:.0%}",
                        flush=True,
                    )
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
