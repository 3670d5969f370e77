"""``make bench``: every figure issue 7's targets are phrased in, from one run.

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
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import revocation_memory, servers, streaming
from benchmarks.load import Case, Cores, Run, basic, cleanup_scripts, post_form, wrk

PG_ADMIN_URL = os.environ.get(
    "GATEWAY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PROXY_CONNECTIONS = 32
TOKEN_CONNECTIONS = 16

#: case name -> title; the groups ``--only`` also accepts
PROXY = {
    "reference": "reference: uvicorn + aiohttp passthrough, no auth",
    "public-1w": "gateway public route, 1 worker",
    "scoped-1w": "gateway scoped route (RS256 + identity headers), 1 worker",
    "public-2w": "gateway public route, 2 workers",
    "scoped-2w": "gateway scoped route, 2 workers",
}
TOKENS = {
    "client-credentials-sqlite": "POST /oauth/token client_credentials, SQLite",
    "refresh-token-sqlite": "POST /oauth/token refresh_token (rotating), SQLite",
    "client-credentials-postgres": "POST /oauth/token client_credentials, PostgreSQL",
    "refresh-token-postgres": "POST /oauth/token refresh_token (rotating), PostgreSQL",
}
INTROSPECT = {
    "introspect-sqlite": "POST /oauth/introspect, SQLite",
    "introspect-postgres": "POST /oauth/introspect, PostgreSQL",
}
STREAMING = {name: name for name in streaming.CASES}
REVOCATIONS = {"revocations-1m": "revocation sets, 1,000,000 jtis"}
GROUPS = {
    "proxy": PROXY,
    "tokens": TOKENS,
    "introspect": INTROSPECT,
    "streaming": STREAMING,
    "revocations": REVOCATIONS,
}
ALL = {name: title for group in GROUPS.values() for name, title in group.items()}


@dataclass
class Plan:
    rounds: int
    seconds: float
    stream_bytes: int
    revoked_jtis: int
    selected: list[str]
    cores: Cores = field(default_factory=Cores.plan)

    @property
    def wrk_threads(self) -> int:
        return max(1, min(4, len(self.cores.load)))

    def wants(self, *names: str) -> bool:
        return any(name in self.selected for name in names)


# --- the cases -------------------------------------------------------------------------


def proxy_case(plan: Plan, name: str, url: str, pid: int, token: str | None = None) -> Case:
    headers = [f"Authorization: Bearer {token}"] if token else []

    def load(seconds: float) -> Run:
        return wrk(
            url,
            seconds=seconds,
            connections=PROXY_CONNECTIONS,
            threads=plan.wrk_threads,
            headers=headers,
            pin=plan.cores.pin(plan.cores.load),
            cpu_of=pid,
        )

    return Case(name, lambda: load(plan.seconds), lambda: load(1))


def form_case(
    plan: Plan, name: str, url: str, pid: int, authorization: str, form: str, expect: str
) -> Case:
    def load(seconds: float) -> Run:
        return wrk(
            url,
            seconds=seconds,
            connections=TOKEN_CONNECTIONS,
            threads=plan.wrk_threads,
            lua="form_post",
            args=[authorization, form, expect],
            pin=plan.cores.pin(plan.cores.load),
            cpu_of=pid,
        )

    return Case(name, lambda: load(plan.seconds), lambda: load(1))


def refresh_case(
    plan: Plan, name: str, base: str, pid: int, deployment: servers.Deployment, folder: Path
) -> Case:
    """Rotating refresh tokens: fresh seeds each run (password grant), one per connection and
    a few spare per wrk thread; every answer's new token is sent next (lua/refresh_chain)."""
    auth = basic(deployment.client_id, deployment.client_secret)
    threads = plan.wrk_threads
    per_thread = TOKEN_CONNECTIONS // threads + 4

    def seed() -> Path:
        form = {
            "grant_type": "password",
            "username": servers.USER_EMAIL,
            "password": servers.USER_PASSWORD,
            "scope": servers.SCOPE,
        }
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: post_form(base + "/oauth/token", form, auth),
                    range(threads * per_thread),
                )
            )
        path = folder / f"{name}-seeds.txt"
        path.write_text("".join(a["refresh_token"] + "\n" for a in answers))
        return path

    def measure() -> Run:
        seeds = seed()
        return wrk(
            base + "/oauth/token",
            seconds=plan.seconds,
            connections=TOKEN_CONNECTIONS,
            threads=threads,
            lua="refresh_chain",
            args=[auth, str(seeds), str(per_thread)],
            pin=plan.cores.pin(plan.cores.load),
            cpu_of=pid,
        )

    return Case(name, measure)


def access_token(base: str, deployment: servers.Deployment) -> str:
    answer = post_form(
        base + "/oauth/token",
        {"grant_type": "client_credentials", "scope": servers.SCOPE},
        basic(deployment.client_id, deployment.client_secret),
    )
    return str(answer["access_token"])


def token_cases(
    plan: Plan, suffix: str, base: str, pid: int, deployment: servers.Deployment, folder: Path
) -> list[Case]:
    cases = []
    auth = basic(deployment.client_id, deployment.client_secret)
    if plan.wants(f"client-credentials-{suffix}"):
        cases.append(
            form_case(
                plan,
                f"client-credentials-{suffix}",
                base + "/oauth/token",
                pid,
                auth,
                "grant_type=client_credentials",
                '"access_token"',
            )
        )
    if plan.wants(f"refresh-token-{suffix}"):
        cases.append(refresh_case(plan, f"refresh-token-{suffix}", base, pid, deployment, folder))
    if plan.wants(f"introspect-{suffix}"):
        introspector = basic(deployment.introspector_id, deployment.introspector_secret)
        token = access_token(base, deployment)
        cases.append(
            form_case(
                plan,
                f"introspect-{suffix}",
                base + "/oauth/introspect",
                pid,
                introspector,
                f"token={token}",
                '"active"%s*:%s*true',
            )
        )
    return cases


# --- setting it all up -----------------------------------------------------------------


@dataclass
class Setup:
    cases: list[Case]
    notes: list[str]


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
    needs_gateway = plan.wants(*PROXY, *TOKENS, *INTROSPECT, *STREAMING)
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
        sink_url = stack.enter_context(servers.sink(folder, load_pin))
        sqlite = servers.deploy(
            folder, "sqlite", f"sqlite:///{folder / 'gateway.db'}", upstream.url, sink_url
        )
        base, pid = stack.enter_context(servers.gateway(folder, sqlite, 1, server_pin))
        if plan.wants("reference"):
            ref_url, ref_pid = stack.enter_context(
                servers.reference(folder, server_pin, upstream.url)
            )
            cases.append(proxy_case(plan, "reference", ref_url + "/public/x", ref_pid))
        token = access_token(base, sqlite)
        if plan.wants("public-1w"):
            cases.append(proxy_case(plan, "public-1w", base + "/public/x", pid))
        if plan.wants("scoped-1w"):
            cases.append(proxy_case(plan, "scoped-1w", base + "/scoped/x", pid, token))
        if plan.wants("public-2w", "scoped-2w"):
            base2, pid2 = stack.enter_context(servers.gateway(folder, sqlite, 2, wide_pin))
            if plan.wants("public-2w"):
                cases.append(proxy_case(plan, "public-2w", base2 + "/public/x", pid2))
            if plan.wants("scoped-2w"):
                cases.append(proxy_case(plan, "scoped-2w", base2 + "/scoped/x", pid2, token))
        cases += token_cases(plan, "sqlite", base, pid, sqlite, folder)
        if plan.wants(*(n for n in (*TOKENS, *INTROSPECT) if n.endswith("postgres"))):
            if servers.ensure_postgres():
                from tests.databases import scratch_database

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
        yield Setup(cases, notes)


# --- running and reporting ---------------------------------------------------------------


def _line(name: str, sample: Run | streaming.Transfer) -> str:
    if isinstance(sample, streaming.Transfer):
        return f"{name:30} {sample.mb_per_s:9,.0f} MB/s"
    cpu = ""
    if sample.cpu_us_per_request is not None and sample.cpu_busy is not None:
        cpu = f"{sample.cpu_us_per_request:6.0f} µs/req ({sample.cpu_busy:4.0%} busy)"
    flag = f"  ERRORS {sample.errors} BAD {sample.bad}" if sample.errors or sample.bad else ""
    return (
        f"{name:30} {sample.rate:9,.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
        f"p99 {sample.p99_ms:6.2f} ms  cpu {cpu}{flag}"
    )


def run_rounds(plan: Plan, cases: list[Case]) -> dict[str, list[Run | streaming.Transfer]]:
    samples: dict[str, list[Run | streaming.Transfer]] = {case.name: [] for case in cases}
    warm = [case for case in cases if case.warm_up is not None]
    if warm:
        print(f"warming up {len(warm)} case(s), 1 s each", flush=True)
        for case in warm:
            assert case.warm_up is not None
            case.warm_up()
    for number in range(1, plan.rounds + 1):
        for case in cases:
            sample = case.measure()
            samples[case.name].append(sample)
            print(f"round {number}/{plan.rounds}  {_line(case.name, sample)}", flush=True)
    return samples


@dataclass(frozen=True)
class Summary:
    """The medians over the rounds (errors: summed)."""

    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None
    cpu_busy: float | None
    rss_mb: float | None
    errors: int

    @classmethod
    def of(cls, runs: list[Run]) -> Summary:
        cpus = [r.cpu_us_per_request for r in runs if r.cpu_us_per_request is not None]
        rss = [r.rss_mb for r in runs if r.rss_mb is not None]
        busy = [r.cpu_busy for r in runs if r.cpu_busy is not None]
        return cls(
            rate=statistics.median(r.rate for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            cpu_us=statistics.median(cpus) if cpus else None,
            cpu_busy=statistics.median(busy) if busy else None,
            rss_mb=max(rss) if rss else None,
            errors=sum(r.errors + r.bad for r in runs),
        )


def _table(title: str, names: dict[str, str], results: dict[str, Summary]) -> None:
    rows = [(name, results[name]) for name in names if name in results]
    if not rows:
        return
    print(f"\n{title}")
    print(
        f"  {'case':29} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11} "
        f"{'busy':>5} {'RSS MB':>7} {'errors':>7}  what"
    )
    for name, s in rows:
        cpu = f"{s.cpu_us:11.0f}" if s.cpu_us is not None else f"{'':>11}"
        busy = f"{s.cpu_busy:5.0%}" if s.cpu_busy is not None else f"{'':>5}"
        rss = f"{s.rss_mb:7.0f}" if s.rss_mb is not None else f"{'':>7}"
        print(
            f"  {name:29} {s.rate:9,.0f} {s.p50_ms:8.2f} {s.p99_ms:8.2f} {cpu} {busy} {rss} "
            f"{s.errors:7}  {names[name]}"
        )


class Targets:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def add(self, what: str, value: str, target: str, met: bool | None) -> None:
        self.rows.append((what, value, target, met))

    def ratio(
        self,
        what: str,
        results: dict[str, Summary],
        top: str,
        bottom: str,
        minimum: float,
        field: str = "rate",
    ) -> None:
        if top not in results or bottom not in results:
            return
        a, b = results[top], results[bottom]
        value = getattr(a, field) / getattr(b, field) if getattr(b, field) else 0.0
        if field == "rate":
            clean = not (a.errors or b.errors)
            note = "" if clean else " (errors)"
            self.add(what, f"{value:.2f}x{note}", f">= {minimum:.2f}x", clean and value >= minimum)
        else:  # a latency: at most ``minimum`` times the other's
            self.add(what, f"{value:.2f}x", f"<= {minimum:.2f}x", value <= minimum)

    def rate(self, what: str, results: dict[str, Summary], name: str, minimum: float) -> None:
        if name not in results:
            return
        s = results[name]
        note = f" ({s.errors} errors)" if s.errors else ""
        met = not s.errors and s.rate >= minimum
        self.add(what, f"{s.rate:,.0f}/s{note}", f">= {minimum:,.0f}/s", met)

    def print(self) -> None:
        if not self.rows:
            return
        print("\nTargets (issue 7)")
        for what, value, target, met in self.rows:
            verdict = "n/a" if met is None else ("met" if met else "MISSED")
            print(f"  {what:52} {value:>18}  target {target:>11}  {verdict}")


def report(
    plan: Plan,
    samples: dict[str, list[Run | streaming.Transfer]],
    revocations: dict[str, float] | None,
) -> None:
    results = {
        name: Summary.of([s for s in runs if isinstance(s, Run)])
        for name, runs in samples.items()
        if runs and isinstance(runs[0], Run)
    }
    rounds = f"median of {plan.rounds} round(s) of {plan.seconds:g} s"
    if results:
        print(
            "\nCPU µs/req: the server's process tree (all workers), utime + stime from /proc, per "
            "request;\nbusy: its CPU seconds per second of the run (100%: one core saturated; "
            "well below: it waited,\non the disk or on another process sharing its core)"
        )
    _table(f"Proxy ({rounds}, wrk -c{PROXY_CONNECTIONS})", PROXY, results)
    if plan.wants("public-2w", "scoped-2w") and plan.cores.wide_overlaps_load:
        print(
            "  note: the 2-worker cases run on cores shared with wrk and the upstream (this "
            "machine has none to spare), so their figures understate what 2 workers can do"
        )
    _table(f"Token endpoint ({rounds}, wrk -c{TOKEN_CONNECTIONS}, RS256)", TOKENS, results)
    _table(f"Introspection ({rounds}, wrk -c{TOKEN_CONNECTIONS})", INTROSPECT, results)
    transfers = {
        name: [s for s in runs if isinstance(s, streaming.Transfer)]
        for name, runs in samples.items()
        if runs and isinstance(runs[0], streaming.Transfer)
    }
    ratios = streaming.report(transfers, plan.stream_bytes)
    if revocations is not None:
        print(f"\nRevocation sets, {revocations['rows']:,.0f} revoked jtis (SQLite)")
        for key, label, unit in revocation_memory.FIGURES:
            print(f"  {label:52} {revocations[key]:10.2f} {unit}")

    targets = Targets()
    targets.ratio(
        "proxy: scoped / reference, req/s (1 worker)", results, "scoped-1w", "reference", 2.0
    )
    targets.ratio(
        "proxy: public / reference, req/s (1 worker)", results, "public-1w", "reference", 2.5
    )
    targets.ratio("proxy: scoped, 2 workers / 1 worker", results, "scoped-2w", "scoped-1w", 1.8)
    targets.ratio("proxy: public, 2 workers / 1 worker", results, "public-2w", "public-1w", 1.8)
    for name in ("scoped-1w", "public-1w"):
        what = f"proxy: p99 {name.split('-')[0]} / reference p99 (1 worker)"
        targets.ratio(what, results, name, "reference", 1.0, field="p99_ms")
    for db in ("sqlite", "postgres"):
        targets.rate(f"token: client_credentials, {db}", results, f"client-credentials-{db}", 1300)
        targets.rate(f"token: refresh_token, {db}", results, f"refresh-token-{db}", 500)
    for db in ("sqlite", "postgres"):
        targets.rate(f"introspection, {db}", results, f"introspect-{db}", 3000)
    for what, value in ratios.items():
        targets.add(f"streaming: {what} gateway / direct", f"{value:.0%}", ">= 80%", value >= 0.8)
    if revocations is not None:
        growth, load = revocations["rss_growth_mb"], revocations["load_s"]
        targets.add(
            "revocations: RSS growth, 1M jtis", f"{growth:.0f} MB", "<= 150 MB", growth <= 150
        )
        targets.add("revocations: load time, 1M jtis", f"{load:.2f} s", "<= 5 s", load <= 5)
    targets.print()


def _wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr or "wrk ?").splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick: 1)")
    parser.add_argument("--seconds", type=float, help="seconds per load run (default 6; quick: 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run, under 2 minutes")
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
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
            with set_up(plan, Path(tmp)) as setup:
                for note in setup.notes:
                    print(note)
                if setup.cases:
                    samples = run_rounds(plan, setup.cases)
            if plan.wants(*REVOCATIONS):
                print(f"revocation sets: {plan.revoked_jtis:,} jtis ...", flush=True)
                revocations = revocation_memory.run(
                    plan.revoked_jtis, plan.cores.pin(plan.cores.server)
                )
    finally:
        cleanup_scripts()
    report(plan, samples, revocations)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
