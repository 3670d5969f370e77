"""``make bench``: every figure the targets are phrased in, from one run.

    .venv/bin/python -m benchmarks.run [--rounds 3] [--seconds 6] [--quick] [--only CASE ...]

Starts Debian's nginx as the upstream (installed when missing and root; else our own asyncio
upstream, and the output says so), the reference peer (uvicorn + aiohttp bare passthrough,
``benchmarks/reference_passthrough.py``) and gateways set up through the CLI (``init``,
``client create``, ``user create``; SQLite, and PostgreSQL on 127.0.0.1:5432 in a scratch
database), each ``gateway serve`` as a user runs it. The system under test is pinned to one
core and wrk and the upstream to the other(s) where there are two or more. Cases run in
interleaved rounds; each figure is the median over the rounds. Then the streaming throughput
and the revocation sets at 1M jtis. Ends with one table per concern and the targets, each
"met" or "MISSED" (a rate measured with errors is MISSED, whatever its value).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks import access_log, listener, revocation_memory, servers, streaming
from benchmarks.cases import MCP_CALL, MCP_HEADERS, access_token, proxy_case, token_cases
from benchmarks.dpop import dpop_case
from benchmarks.load import Case, Run, cleanup_scripts
from benchmarks.plan import (
    ACCESS_LOG,
    ALL,
    EDGE,
    GROUPS,
    INTROSPECT,
    PG_ADMIN_URL,
    PROXY,
    PROXY_CONNECTIONS,
    REVOCATIONS,
    STREAMING,
    TOKENS,
    Plan,
)
from benchmarks.report import line, report

FAILED_RUN = Run(0, 0.0, 0.0, 0.0, 1, 0, None, None, None, None, None)
FAILED_TRANSFER = streaming.Transfer(0.0, None)


@dataclass
class Setup:
    cases: list[Case]
    notes: list[str]
    upstream: str = ""


@contextlib.contextmanager
def set_up(plan: Plan, folder: Path) -> Iterator[Setup]:
    cores = plan.cores
    server_pin, wide_pin, load_pin = (
        cores.pin(cores.server),
        cores.pin(cores.server_wide),
        cores.pin(cores.load),
    )
    notes: list[str] = []
    cases: list[Case] = []
    needs_gateway = plan.wants(*PROXY, *EDGE, "scoped-1w-stock", *TOKENS, *INTROSPECT, *STREAMING)
    wants_streaming = plan.wants(*STREAMING)
    if needs_gateway and not servers.ensure_tool("wrk", "wrk"):
        raise SystemExit("bench: wrk is not installed (apt-get install wrk)")
    if wants_streaming and not servers.ensure_tool("curl", "curl"):
        raise SystemExit("bench: curl is not installed (apt-get install curl)")
    with contextlib.ExitStack() as stack:
        if not needs_gateway:
            yield Setup(cases, notes)
            return
        blob = streaming.make_blob(folder, plan.stream_bytes if wants_streaming else 1)
        upstream = stack.enter_context(servers.upstream(folder, load_pin, blob))
        notes.append(f"upstream: {upstream.label}, on the load core(s)")
        label = upstream.label
        sink_url = stack.enter_context(servers.sink(folder, load_pin)).url
        sqlite = servers.deploy(
            folder, "sqlite", f"sqlite:///{folder / 'gateway.db'}", upstream.url, sink_url
        )
        base, pid = stack.enter_context(servers.gateway(folder, sqlite, 1, server_pin))
        if plan.wants("reference"):
            ref_url, ref_pid = stack.enter_context(
                servers.reference(folder, server_pin, upstream.url)
            )
            cases.append(
                proxy_case(plan, "reference", ref_url + "/public/x", ref_pid, upstream.pid)
            )
        token = access_token(base, sqlite)
        if plan.wants("public-1w"):
            cases.append(proxy_case(plan, "public-1w", base + "/public/x", pid, upstream.pid))
        if plan.wants("scoped-1w"):
            cases.append(
                proxy_case(plan, "scoped-1w", base + "/scoped/x", pid, upstream.pid, token)
            )
        if plan.wants("scoped-dpop-1w"):
            url = base + "/dpop/x"
            cases.append(
                dpop_case(plan, "scoped-dpop-1w", url, pid, upstream.pid, base, sqlite, folder)
            )
        for name, path in (("scoped-post-1w", "/scoped/x"), ("mcp-1w", "/mcp")):
            if plan.wants(name):  # one MCP tools/call: through a plain route, and an mcp one
                url = base + path
                cases.append(
                    proxy_case(plan, name, url, pid, upstream.pid, token, MCP_HEADERS, MCP_CALL)
                )
        if plan.wants("scoped-1w-stock"):
            # the same app on uvicorn's stock protocol: what the listener's limits cost
            base_s, pid_s = stack.enter_context(
                servers.gateway(folder, sqlite, 1, server_pin, stock=True)
            )
            url = base_s + "/scoped/x"
            cases.append(proxy_case(plan, "scoped-1w-stock", url, pid_s, upstream.pid, token))
        if plan.wants("public-1w-nolog", "scoped-1w-nolog"):
            quiet = servers.without_access_log(sqlite)
            base_q, pid_q = stack.enter_context(servers.gateway(folder, quiet, 1, server_pin))
            for route, bearer in (("public", None), ("scoped", token)):
                if plan.wants(f"{route}-1w-nolog"):
                    url = f"{base_q}/{route}/x"
                    cases.append(
                        proxy_case(plan, f"{route}-1w-nolog", url, pid_q, upstream.pid, bearer)
                    )
        if plan.wants("decisions-1w"):
            nginx_asks = ["X-Original-Method: GET", "X-Original-URI: /scoped/x"]
            cases.append(
                proxy_case(
                    plan, "decisions-1w", base + "/decisions", pid, upstream.pid, token, nginx_asks
                )
            )
        if plan.wants("nginx-edge-1w"):
            # the edge shares the gateway's core: the same CPU as the gateway's own proxy has
            edge_url, _ = stack.enter_context(
                servers.edge_nginx(folder, server_pin, sqlite, base, upstream.url)
            )
            cases.append(
                proxy_case(plan, "nginx-edge-1w", edge_url + "/scoped/x", pid, upstream.pid, token)
            )
        if plan.wants("public-2w", "scoped-2w"):
            base2, pid2 = stack.enter_context(servers.gateway(folder, sqlite, 2, wide_pin))
            if plan.wants("public-2w"):
                cases.append(proxy_case(plan, "public-2w", base2 + "/public/x", pid2, upstream.pid))
            if plan.wants("scoped-2w"):
                cases.append(
                    proxy_case(plan, "scoped-2w", base2 + "/scoped/x", pid2, upstream.pid, token)
                )
        cases += token_cases(plan, "sqlite", base, pid, sqlite, folder)
        if plan.wants(*(n for n in (*TOKENS, *INTROSPECT) if n.endswith("postgres"))):
            if servers.ensure_postgres():
                from tests.support.databases import scratch_database

                pg_url = stack.enter_context(scratch_database(PG_ADMIN_URL, prefix="gateway_bench"))
                pg = servers.deploy(folder, "postgres", pg_url, upstream.url, sink_url)
                pg_base, pg_pid = stack.enter_context(servers.gateway(folder, pg, 1, server_pin))
                cases += token_cases(plan, "postgres", pg_base, pg_pid, pg, folder)
                notes.append("PostgreSQL: a scratch database on 127.0.0.1:5432, dropped after")
            else:
                notes.append("PostgreSQL: SKIPPED (not reachable on 127.0.0.1:5432)")
        if wants_streaming:
            cases += streaming.cases(
                plan.selected, upstream.url, sink_url, base, pid, blob, load_pin
            )
        yield Setup(cases, notes, label)


# --- running ---------------------------------------------------------------------------


def run_rounds(plan: Plan, cases: list[Case]) -> dict[str, list[Run | streaming.Transfer]]:
    samples: dict[str, list[Run | streaming.Transfer]] = {case.name: [] for case in cases}
    warm = [case for case in cases if case.warm_up is not None]
    if warm:
        print(f"warming up {len(warm)} case(s), 1 s each", flush=True)
        for case in warm:
            assert case.warm_up is not None
            with contextlib.suppress(Exception):  # the measured runs will say what fails
                case.warm_up()
    for number in range(1, plan.rounds + 1):
        for case in cases:
            try:
                sample = case.measure()
            except Exception as exc:  # one failed run must not lose the others' figures
                print(f"round {number}/{plan.rounds}  {case.name:30} FAILED: {exc}", flush=True)
                sample = FAILED_TRANSFER if case.name in STREAMING else FAILED_RUN
            samples[case.name].append(sample)
            print(f"round {number}/{plan.rounds}  {line(case.name, sample)}", flush=True)
    return samples


def _wrk_version() -> str:
    """wrk's version line; "wrk not yet installed" on a fresh machine (``set_up`` installs it)."""
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "wrk not yet installed"
    return (out.stdout or out.stderr or "wrk ?").splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick: 1)")
    parser.add_argument("--seconds", type=float, help="seconds per load run (default 6; quick: 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run, under 2 minutes")
    parser.add_argument(
        "--connections",
        type=int,
        default=PROXY_CONNECTIONS,
        help=f"wrk connections for the proxy cases (default {PROXY_CONNECTIONS})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's folder (configs, server logs)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="CASE",
        choices=[*GROUPS, *ALL],
        help=f"cases or groups: {', '.join(GROUPS)}; or one of {', '.join(ALL)}",
    )
    args = parser.parse_args()
    selected = [
        name
        for name in ALL
        if not args.only or name in args.only or any(name in GROUPS.get(g, ()) for g in args.only)
    ]
    plan = Plan(
        rounds=args.rounds or (1 if args.quick else 3),
        seconds=args.seconds or (2.0 if args.quick else 6.0),
        stream_bytes=(64 if args.quick else 512) << 20,
        revoked_jtis=revocation_memory.ROWS,
        selected=selected,
        proxy_connections=args.connections,
    )
    started = time.monotonic()
    print(f"gateway benchmarks: {', '.join(selected)}")
    print(
        f"machine: {os.cpu_count()} CPU(s), {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {_wrk_version()}"
    )
    print(f"cores: {plan.cores.describe()}")
    print(f"rounds: {plan.rounds}, {plan.seconds:g} s per load run, interleaved", flush=True)
    samples: dict[str, list[Run | streaming.Transfer]] = {}
    revocations = None
    access_log_cost = None
    listener_cost = None
    upstream = ""
    try:
        with contextlib.ExitStack() as stack:
            if args.keep:
                tmp = tempfile.mkdtemp(prefix="gateway-bench-")
                print(f"keeping the run's folder: {tmp}")
            else:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-bench-"))
            with set_up(plan, Path(tmp)) as setup:
                upstream = setup.upstream
                for note in setup.notes:
                    print(note)
                if setup.cases:
                    samples = run_rounds(plan, setup.cases)
            if plan.wants(*REVOCATIONS):
                print(f"revocation sets: {plan.revoked_jtis:,} jtis ...", flush=True)
                # not pinned: nothing of ours loads the machine now, and a core that another
                # user's process is pinned to would slow it down several times over
                revocations = revocation_memory.run(plan.revoked_jtis)
            if plan.wants(*ACCESS_LOG):
                print("access log: micro-benchmark ...", flush=True)
                access_log_cost = access_log.run()
            if plan.wants("listener-micro"):
                print("listener: micro-benchmark (and callgrind, if installed) ...", flush=True)
                listener_cost = listener.run()
    finally:
        cleanup_scripts()
    report(plan, samples, revocations, upstream, access_log_cost, listener_cost)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
