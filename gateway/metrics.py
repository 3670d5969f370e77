"""``GET /metrics`` with prometheus-client: one scrape reports every worker process of a serve.

One process keeps its values in memory. Under ``gateway serve --workers N`` the parent makes a
fresh private directory and names it in ``$PROMETHEUS_MULTIPROC_DIR`` before the workers start
(``gateway.serve``); each worker's values are then memory-mapped files in it
(prometheus-client's multiprocess mode), and a scrape, whichever worker answers it, reads and
combines them all:

- counters and the histogram: summed over every worker that ran since ``serve`` started (a
  worker that exited or was replaced still counts, so totals never go back);
- gauges: over the live workers, each by the mode in ``GAUGES``. A worker that exits drops out
  (it marks itself dead; a scrape also drops any worker whose process is gone).

Gauges are read from the gateway's state (``refresh``) when a worker answers a scrape, and by
every worker once a second, so another worker's gauge is at most a second old.

The proxy records one observation per request (``observe``) in a tally of plain numbers per
(route, status): a count, a sum and a bucket count found by bisection. prometheus-client's own
``inc`` and ``observe`` take a lock each and walk the buckets in Python (and under N workers
write to the memory-mapped files): work the request path need not do per request. The tallies
are added to prometheus-client's values in bulk (``sync``) before every scrape this process
answers, once a second under ``--workers N`` (so a scrape answered by another worker is at most
a second behind this one, as its gauges are), and at exit.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from gateway.config import GRANT_TYPES
from gateway.listener import CLOSE_REASONS
from gateway.throttle import THROTTLE_KEYS, ThrottleKey

#: names the directory of the workers' files; read when prometheus-client is imported
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: the Prometheus text format, version 0.0.4
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: upper bounds of the latency histogram, in seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

STALENESS = "gateway_revocation_staleness_seconds"
#: name -> (help, how the live workers' values combine under ``--workers N``)
GAUGES: dict[str, tuple[str, Literal["livemax", "livemin", "livesum"]]] = {
    "gateway_revocation_entries": (
        "Entries in the revocation sets (of the worker holding the most).",
        "livemax",
    ),
    STALENESS: (
        "Seconds since the revocation sets were last synced with the database "
        "(of the stalest worker; -1 while one has never synced).",
        "livemax",
    ),
    "gateway_revocation_listener_connected": (
        "1 while the LISTEN connection for revocation pushes is up (PostgreSQL) in every worker.",
        "livemin",
    ),
    "gateway_signing_keys": (
        "Published signing keys (of the worker holding the fewest).",
        "livemin",
    ),
    "gateway_password_verifications": (
        "Password verifications running or waiting (all workers together).",
        "livesum",
    ),
}


class Metrics:
    """Every metric of one gateway process; ``read_gauges`` returns ``GAUGES``' values now."""

    def __init__(self, read_gauges: Callable[[], dict[str, float]]) -> None:
        self._read_gauges = read_gauges
        self._directory = os.environ.get(MULTIPROC_DIR) or None
        registry = CollectorRegistry()
        self._requests = Counter(
            "gateway_proxy_requests",
            "Proxied requests by route and response status.",
            ["route", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "gateway_proxy_request_duration_seconds",
            "Time to the end of each response.",
            ["route"],
            buckets=BUCKETS,
            registry=registry,
        )
        #: (route, status) -> requests not yet synced: [count, sum, per-bucket counts...]
        self._tallies: dict[tuple[str, str], list[float]] = {}
        self._issued = Counter(
            "gateway_tokens_issued",
            "Token responses by grant type.",
            ["grant_type"],
            registry=registry,
        )
        self._failures = Counter(
            "gateway_token_failures",
            "Bearer tokens the proxy refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self._throttled = Counter(
            "gateway_login_throttled",
            "Password logins refused by the throttle, by the budget that refused them "
            "(address, user_address, user).",
            ["key"],
            registry=registry,
        )
        self._cookies_dropped = Counter(
            "gateway_upstream_cookies_dropped",
            "Set-Cookie fields from upstreams dropped by route: they named a cookie of the "
            "gateway's or a path under /oauth or /.well-known.",
            ["route"],
            registry=registry,
        )
        # shown at 0 from the start, so that a rate over them is defined
        for grant in GRANT_TYPES:
            self._issued.labels(grant)
        for key in THROTTLE_KEYS:
            self._throttled.labels(key)
        self.password_refused: Callable[[], None] = Counter(
            "gateway_password_pool_refusals",
            "Password verifications refused because the pool and its queue were full.",
            registry=registry,
        ).inc
        closes = Counter(
            "gateway_listener_closes",
            "Client connections the listener closed on its own, by reason (idle, or the "
            "refusal it answered).",
            ["reason"],
            registry=registry,
        )
        #: reason -> its pre-bound increment (every reason shown from 0)
        self._listener_closes = {reason: closes.labels(reason).inc for reason in CLOSE_REASONS}
        self.database_error: Callable[[], None] = Counter(
            "gateway_database_errors",
            "Database operations that failed because the database was unavailable.",
            registry=registry,
        ).inc
        self._gauges = {
            name: Gauge(name, text, multiprocess_mode=mode, registry=registry)
            for name, (text, mode) in GAUGES.items()
        }
        source: Collector = registry
        if self._directory:
            source = MultiProcessCollector(None, self._directory)
        self._exposed = _Exposed(source)

    @property
    def multiprocess(self) -> bool:
        return self._directory is not None

    def observe(self, route: str, status: str, seconds: float) -> None:
        """One proxied request: counted by route and status, its duration by route."""
        tally = self._tallies.get((route, status))
        if tally is None:
            tally = self._tallies[(route, status)] = [0.0] * (3 + len(BUCKETS))
        tally[0] += 1
        tally[1] += seconds
        # the first bound >= seconds: prometheus-client's "le" (the last slot is +Inf)
        tally[2 + bisect_left(BUCKETS, seconds)] += 1

    def sync(self) -> None:
        """Add the tallies of ``observe`` to the exposed counter and histogram."""
        for (route, status), tally in self._tallies.items():
            if not tally[0]:
                continue
            self._requests.labels(route, status).inc(tally[0])
            histogram = self._latency.labels(route)
            # prometheus-client has no bulk observe: its per-bucket values are what observe
            # increments (tests/test_metrics.py checks the two agree)
            histogram._sum.inc(tally[1])
            for value, count in zip(histogram._buckets, tally[2:], strict=True):
                if count:
                    value.inc(count)
            tally[:] = [0.0] * len(tally)

    def token_issued(self, grant_type: str) -> None:
        """A token response was sent; ``grant_type``: one the server has registered."""
        self._issued.labels(grant_type).inc()

    def token_failed(self, reason: str) -> None:
        """``reason``: a ``GatewayError.reason``, a fixed word (a bounded label)."""
        self._failures.labels(reason).inc()

    def login_throttled(self, key: ThrottleKey) -> None:
        """A login refused by the throttle (``LoginThrottle.on_refusal``)."""
        self._throttled.labels(key).inc()

    def upstream_cookies_dropped(self, route: str, count: int) -> None:
        """``count`` Set-Cookie fields of one upstream response were dropped (rare: not
        tallied like ``observe``)."""
        self._cookies_dropped.labels(route).inc(count)

    def listener_closed(self, reason: str) -> None:
        """``reason``: one of ``gateway.listener.CLOSE_REASONS``."""
        self._listener_closes[reason]()

    def refresh(self) -> None:
        """Set the gauges from the gateway's state (under N workers: this worker's file), and
        sync the proxy's tallies."""
        self.sync()
        for name, value in self._read_gauges().items():
            self._gauges[name].set(value)

    def render(self) -> bytes:
        """The exposition of this process, or of every worker's files."""
        self.refresh()
        if self._directory:
            _forget_exited_workers(self._directory)
        return generate_latest(self._exposed)

    def close(self) -> None:
        """This worker stops: its gauges no longer count (its counters always will)."""
        self.sync()
        if self._directory:
            mark_process_dead(os.getpid(), self._directory)


class _Exposed:
    """The same series whether read from memory or from files: no ``_created`` samples (the
    files have none), and an infinite staleness (never synced) as -1."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        for metric in self._source.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            if metric.name == STALENESS:
                metric.samples = [
                    s._replace(value=-1.0) if math.isinf(s.value) else s for s in metric.samples
                ]
            yield metric


def _forget_exited_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone (killed, or replaced by uvicorn)."""
    # the live gauges' files are named like gauge_livemax_1234.db
    names = (n.removesuffix(".db") for n in os.listdir(directory) if n.startswith("gauge_live"))
    for pid in {int(n.rpartition("_")[2]) for n in names}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)
        except PermissionError:  # alive: another user's process (the pid was reused)
            pass
