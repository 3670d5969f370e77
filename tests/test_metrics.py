"""GET /metrics: Prometheus text with per-route proxy counters and the gateway's gauges."""

from __future__ import annotations

import dataclasses
import re

from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, MetricsConfig, RouteConfig
from gateway.metrics import ProxyMetrics
from gateway.storage import Storage
from tests.conftest import ISSUER

CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens there on a test machine


def test_proxy_counters_and_gauges_are_exposed(config: Config, storage: Storage) -> None:
    routed = dataclasses.replace(
        config,
        routes=(RouteConfig(path="/orders", upstream=CLOSED_PORT, name="orders"),),
    )
    with TestClient(create_app(routed), base_url=ISSUER) as client:
        assert client.get("/orders/1").status_code == 401  # no token
        assert client.get("/nowhere").status_code == 404
        body = client.get("/metrics")

    assert body.status_code == 200
    assert body.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.text
    assert 'gateway_proxy_requests_total{route="orders",status="401"} 1' in text
    assert 'gateway_proxy_requests_total{route="(no route)",status="404"} 1' in text
    assert re.search(r'_count\{route="orders"\} 1\b', text)
    assert "gateway_signing_keys 1" in text
    assert "gateway_revocation_entries 0" in text


def test_metrics_can_be_turned_off(config: Config, storage: Storage) -> None:
    off = dataclasses.replace(config, metrics=MetricsConfig(enabled=False))
    with TestClient(create_app(off), base_url=ISSUER) as client:
        assert client.get("/metrics").status_code == 404


def test_histogram_buckets_are_cumulative() -> None:
    metrics = ProxyMetrics()
    for seconds in (0.001, 0.02, 0.02, 30.0):
        metrics.observe("r", "200", seconds)
    text = "\n".join(metrics.render())
    assert 'duration_seconds_bucket{route="r",le="0.005"} 1' in text
    assert 'duration_seconds_bucket{route="r",le="0.025"} 3' in text
    assert 'duration_seconds_bucket{route="r",le="10.0"} 3' in text
    assert 'duration_seconds_bucket{route="r",le="+Inf"} 4' in text
    assert 'duration_seconds_count{route="r"} 4' in text
