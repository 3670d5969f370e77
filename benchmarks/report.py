"""The final tables and the targets, each "met" or "MISSED" (a rate measured with
errors is MISSED, whatever its value)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from benchmarks import access_log, listener, revocation_memory, streaming
from benchmarks.load import Run
from benchmarks.plan import EDGE, INTROSPECT, LISTENER, PROXY, TOKEN_CONNECTIONS, TOKENS, Plan


def line(name: str, sample: Run | streaming.Transfer) -> str:
    if isinstance(sample, streaming.Transfer):
        return f"{name:30} {sample.mb_per_s:9,.0f} MB/s"
    cpu = ""
    if sample.cpu_us_per_request is not None and sample.cpu_busy is not None:
        cpu = f"{sample.cpu_us_per_request:6.0f} µs/req ({sample.cpu_busy:4.0%} busy)"
        if sample.runqueue is not None:
            cpu += f", runq {sample.runqueue:4.0%}"
        if sample.load_busy is not None:
            cpu += f", load {sample.load_busy:4.0%}"
    flag = f"  ERRORS {sample.errors} BAD {sample.bad}" if sample.errors or sample.bad else ""
    return (
        f"{name:30} {sample.rate:9,.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
        f"p99 {sample.p99_ms:6.2f} ms  cpu {cpu}{flag}"
    )


@dataclass(frozen=True)
class Summary:
    """The medians over the rounds (errors: summed)."""

    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None
    cpu_busy: float | None
    load_busy: float | None
    runqueue: float | None
    rss_mb: float | None
    errors: int

    @classmethod
    def of(cls, runs: list[Run]) -> Summary:
        cpus = [r.cpu_us_per_request for r in runs if r.cpu_us_per_request is not None]
        rss = [r.rss_mb for r in runs if r.rss_mb is not None]
        busy = [r.cpu_busy for r in runs if r.cpu_busy is not None]
        load = [r.load_busy for r in runs if r.load_busy is not None]
        queued = [r.runqueue for r in runs if r.runqueue is not None]
        return cls(
            rate=statistics.median(r.rate for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            cpu_us=statistics.median(cpus) if cpus else None,
            cpu_busy=statistics.median(busy) if busy else None,
            load_busy=statistics.median(load) if load else None,
            runqueue=statistics.median(queued) if queued else None,
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
        f"{'busy':>5} {'runq':>5} {'load':>5} {'RSS MB':>7} {'errors':>7}  what"
    )

    def share(value: float | None) -> str:
        return f"{value:5.0%}" if value is not None else f"{'':>5}"

    for name, s in rows:
        cpu = f"{s.cpu_us:11.0f}" if s.cpu_us is not None else f"{'':>11}"
        busy, queued, load = share(s.cpu_busy), share(s.runqueue), share(s.load_busy)
        rss = f"{s.rss_mb:7.0f}" if s.rss_mb is not None else f"{'':>7}"
        print(
            f"  {name:29} {s.rate:9,.0f} {s.p50_ms:8.2f} {s.p99_ms:8.2f} {cpu} {busy} {queued} "
            f"{load} {rss} {s.errors:7}  {names[name]}"
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
        clean = not (a.errors or b.errors)
        note = "" if clean else " (errors)"
        if field == "rate":
            met = clean and value >= minimum
            self.add(what, f"{value:.2f}x{note}", f">= {minimum:.2f}x", met)
        else:  # a latency: at most ``minimum`` times the other's
            met = clean and 0 < value <= minimum
            self.add(what, f"{value:.2f}x{note}", f"<= {minimum:.2f}x", met)

    def cpu_ratio(self, what: str, results: dict[str, Summary], top: str, bottom: str) -> None:
        """Requests per CPU second, ``top`` over ``bottom``: the ratio a machine where neither
        waited for the other would show (for reading the req/s ratio on a shared one)."""
        if top not in results or bottom not in results:
            return
        a, b = results[top].cpu_us, results[bottom].cpu_us
        if a and b:
            self.add(what, f"{b / a:.2f}x", "", None)

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
        print("\nTargets")
        for what, value, target, met in self.rows:
            verdict = "(info)" if met is None else ("met" if met else "MISSED")
            print(f"  {what:52} {value:>18}  target {target:>11}  {verdict}")


def report(
    plan: Plan,
    samples: dict[str, list[Run | streaming.Transfer]],
    revocations: dict[str, float] | None,
    upstream: str,
    access_log_cost: dict[str, float] | None = None,
    listener_cost: dict[str, float] | None = None,
) -> None:
    results = {
        name: Summary.of([s for s in runs if isinstance(s, Run)])
        for name, runs in samples.items()
        if runs and isinstance(runs[0], Run)
    }
    rounds = f"median of {plan.rounds} round(s) of {plan.seconds:g} s"
    if results:
        print(
            "\nCPU µs/req: the server's process tree (all workers), utime + stime from /proc, "
            "per request;\nbusy: its CPU seconds per second of the run (100%: one core "
            "saturated; well below: it waited,\non the disk, the upstream or the load); runq: "
            "the share of the run its main threads were ready\nbut waited for a CPU (another "
            "process, or one of its own threads, had the core); load: busy for\nwrk and the "
            "upstream together (near 100% per load core: the figure is the load side's limit)"
        )
    title = f"Proxy ({rounds}, wrk -c{plan.proxy_connections}; upstream: {upstream})"
    _table(title, PROXY, results)
    if plan.wants("public-2w", "scoped-2w") and plan.cores.wide_overlaps_load:
        print(
            "  note: the 2-worker cases run on cores shared with wrk and the upstream (this "
            "machine has none to spare), so their figures understate what 2 workers can do"
        )
    edge = f"Behind an edge ({rounds}, wrk -c{plan.proxy_connections}; CPU: the gateway's only)"
    _table(edge, {"scoped-1w": PROXY["scoped-1w"], **EDGE}, results)
    stock = {"scoped-1w": PROXY["scoped-1w"], "scoped-1w-stock": LISTENER["scoped-1w-stock"]}
    _table(f"Listener ({rounds}, wrk -c{plan.proxy_connections})", stock, results)
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
    if access_log_cost is not None:
        access_log.report(access_log_cost)
    if listener_cost is not None:
        listener.report(listener_cost)

    targets = Targets()
    targets.ratio(
        "proxy: scoped / reference, req/s (1 worker)", results, "scoped-1w", "reference", 2.0
    )
    targets.ratio(
        "proxy: public / reference, req/s (1 worker)", results, "public-1w", "reference", 2.5
    )
    for name in ("scoped-1w", "public-1w"):
        what = f"proxy: {name.split('-')[0]} / reference, requests per CPU second"
        targets.cpu_ratio(what, results, name, "reference")
    targets.ratio(
        "edge: decisions / scoped proxy, req/s", results, "decisions-1w", "scoped-1w", 1.0
    )
    if "nginx-edge-1w" in results and results.get("scoped-1w"):
        ratio = results["nginx-edge-1w"].rate / results["scoped-1w"].rate
        targets.add("edge: nginx + gateway / own proxy, req/s", f"{ratio:.2f}x", "", None)
    targets.ratio("proxy: scoped, 2 workers / 1 worker", results, "scoped-2w", "scoped-1w", 1.8)
    targets.ratio("proxy: public, 2 workers / 1 worker", results, "public-2w", "public-1w", 1.8)
    for name in ("scoped-1w", "public-1w"):
        what = f"proxy: p99 {name.split('-')[0]} / reference p99 (1 worker)"
        targets.ratio(what, results, name, "reference", 1.0, field="p99_ms")
    targets.ratio(
        "proxy: public, access log on / off, req/s", results, "public-1w", "public-1w-nolog", 0.9
    )
    targets.ratio(
        "proxy: scoped, access log on / off, req/s", results, "scoped-1w", "scoped-1w-nolog", 0.9
    )
    for name in ("public", "scoped"):
        on, off = results.get(f"{name}-1w"), results.get(f"{name}-1w-nolog")
        if on and off and on.cpu_us and off.cpu_us:
            what = f"proxy: {name}, CPU µs/req, access log on - off"
            targets.add(what, f"{on.cpu_us - off.cpu_us:+.1f} µs", "", None)
    mcp, post = results.get("mcp-1w"), results.get("scoped-post-1w")
    if mcp and post:  # information: what reading and deciding on the message costs
        note = " (errors)" if mcp.errors or post.errors else ""
        ratio = mcp.rate / post.rate if post.rate else 0.0
        targets.add(
            "proxy: MCP tools/call, mcp route / plain, req/s", f"{ratio:.2f}x{note}", "", None
        )
        if mcp.cpu_us and post.cpu_us:
            what = "proxy: MCP tools/call, CPU µs/req, mcp route - plain"
            targets.add(what, f"{mcp.cpu_us - post.cpu_us:+.1f} µs", "", None)
    dpop, scoped = results.get("scoped-dpop-1w"), results.get("scoped-1w")
    if dpop and dpop.cpu_us:  # issue 18: about 150 µs of CPU or less per DPoP request
        note = " (errors)" if dpop.errors else ""
        what = "proxy: DPoP route (ES256 proof), CPU µs/req"
        targets.add(what, f"{dpop.cpu_us:.0f} µs{note}", "~150 µs", None)
        if scoped and scoped.cpu_us:
            what = "proxy: DPoP route - bearer scoped, CPU µs/req"
            targets.add(what, f"{dpop.cpu_us - scoped.cpu_us:+.1f} µs", "", None)
    if access_log_cost is not None:
        cost = access_log_cost["json_us"]
        what = "access log: JSON line built and written, µs/request"
        targets.add(what, f"{cost:.2f} µs", "<= 5 µs", cost <= 5)
    ours, theirs = results.get("scoped-1w"), results.get("scoped-1w-stock")
    if ours and theirs and ours.cpu_us and theirs.cpu_us:
        what = "listener: scoped, CPU µs/req, gateway's protocol - stock"
        targets.add(what, f"{ours.cpu_us - theirs.cpu_us:+.1f} µs", "", None)
        what = "listener: scoped, requests per CPU second, gateway's / stock"
        targets.add(what, f"{theirs.cpu_us / ours.cpu_us:.3f}x", "", None)
    if listener_cost is not None:
        added = listener_cost["added_us"]
        what = "listener: added per request, µs (micro-benchmark)"
        targets.add(what, f"{added:+.2f} µs", "<= 1 µs", added <= 1)
        if "added_ir" in listener_cost:
            what = "listener: added per request, instructions (callgrind)"
            targets.add(what, f"{listener_cost['added_ir']:+,.0f}", "", None)
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
