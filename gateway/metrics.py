"""Counters for ``GET /metrics``, in the Prometheus text exposition format (version 0.0.4).

The proxy records one observation per request: two dict probes and a bisection over the
buckets on the event loop, no lock, no allocation beyond the first request of a
(route, status) pair. Gauges are read when scraped.
Each worker process keeps its own counters (scrape each, or run one worker per replica).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

#: upper bounds of the latency histogram, in seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ProxyMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        #: per route: counts per bucket (cumulative when rendered), then +Inf, sum
        self._latency: dict[str, list[float]] = {}

    def observe(self, route: str, status: str, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        row = self._latency.get(route)
        if row is None:
            row = self._latency[route] = [0.0] * (len(BUCKETS) + 2)
        # the first bucket whose bound is >= seconds; len(BUCKETS) is +Inf
        row[bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def render(self) -> list[str]:
        lines = [
            "# HELP gateway_proxy_requests_total Proxied requests by route and response status.",
            "# TYPE gateway_proxy_requests_total counter",
        ]
        for (route, status), count in sorted(self.requests.items()):
            lines.append(
                f'gateway_proxy_requests_total{{route="{_label(route)}",status="{status}"}} {count}'
            )
        lines += [
            "# HELP gateway_proxy_request_duration_seconds Time to the end of each response.",
            "# TYPE gateway_proxy_request_duration_seconds histogram",
        ]
        for route, row in sorted(self._latency.items()):
            label = _label(route)
            cumulative = 0.0
            for bound, in_bucket in zip((*BUCKETS, "+Inf"), row[:-1], strict=True):
                cumulative += in_bucket
                lines.append(
                    f'gateway_proxy_request_duration_seconds_bucket{{route="{label}",'
                    f'le="{bound}"}} {cumulative:g}'
                )
            lines.append(f'gateway_proxy_request_duration_seconds_sum{{route="{label}"}} {row[-1]}')
            lines.append(
                f'gateway_proxy_request_duration_seconds_count{{route="{label}"}} {cumulative:g}'
            )
        return lines


def gauges(values: dict[str, tuple[str, Callable[[], float]]]) -> list[str]:
    """``name -> (help, read)`` rendered as gauges, read now."""
    lines = []
    for name, (text, read) in values.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
    return lines


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
