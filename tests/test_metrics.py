"""GET /metrics: Prometheus text with the proxy's counters, the issuer's, and the gateway's gauges.

These run in one process (values in memory); ``tests/test_metrics_workers.py`` runs
``gateway serve --workers 2`` and checks that one scrape sums both workers.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import jwt
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, DatabaseConfig, MetricsConfig, RouteConfig, ThrottleConfig
from gateway.metrics import BUCKETS, GAUGES, Metrics, _forget_exited_workers
from gateway.storage import Storage
from tests.support.app import ISSUER, PASSWORD, Registered, make_client, make_user
from tests.support.issuer import get_code, password_grant, redeem, refresh, tokens
from tests.support.metrics import Samples, samples, value

CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens there on a test machine


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


@pytest.fixture
def routed(config: Config, storage: Storage) -> Iterator[TestClient]:
    """A route that needs ``orders:read``, to an upstream that is not there."""
    route = RouteConfig(
        path="/orders", upstream=CLOSED_PORT, name="orders", scopes=(("orders:read",),)
    )
    with TestClient(
        create_app(dataclasses.replace(config, routes=(route,))), base_url=ISSUER
    ) as client:
        yield client


def client_credentials(client: TestClient, registered: Registered, scope: str) -> str:
    form = {"grant_type": "client_credentials", "scope": scope}
    return str(tokens(client.post("/oauth/token", data=form, auth=registered.auth))["access_token"])


def test_proxy_counters_and_gauges_are_exposed(routed: TestClient) -> None:
    assert routed.get("/orders/1").status_code == 401  # no token
    assert routed.get("/nowhere").status_code == 404
    response = routed.get("/metrics")

    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    found = samples(response.text)
    assert value(found, "gateway_proxy_requests_total", route="orders", status="401") == 1
    assert value(found, "gateway_proxy_requests_total", route="(no route)", status="404") == 1
    assert value(found, "gateway_proxy_request_duration_seconds_count", route="orders") == 1
    assert value(found, "gateway_signing_keys") == 1
    assert value(found, "gateway_revocation_entries") == 0
    # on PostgreSQL the LISTEN connection may or may not be up yet
    assert value(found, "gateway_revocation_listener_connected") in (0, 1)
    assert value(found, "gateway_password_verifications") == 0
    assert 0 <= value(found, "gateway_revocation_staleness_seconds") < 60
    assert set(GAUGES) <= {name for name, _ in found}
    assert not [name for name, _ in found if name.endswith("_created")]


def test_metrics_can_be_turned_off(config: Config, storage: Storage) -> None:
    off = dataclasses.replace(config, metrics=MetricsConfig(enabled=False))
    with TestClient(create_app(off), base_url=ISSUER) as client:
        assert client.get("/metrics").status_code == 404


def test_histogram_buckets_are_cumulative() -> None:
    metrics = Metrics(dict)
    for seconds in (0.001, 0.02, 0.02, 30.0):
        metrics.observe("r", "200", seconds)
    found = samples(metrics.render().decode())
    bucket = "gateway_proxy_request_duration_seconds_bucket"
    assert value(found, bucket, route="r", le="0.005") == 1
    assert value(found, bucket, route="r", le="0.025") == 3
    assert value(found, bucket, route="r", le="10.0") == 3
    assert value(found, bucket, route="r", le="+Inf") == 4
    assert value(found, "gateway_proxy_request_duration_seconds_count", route="r") == 4
    assert value(found, "gateway_proxy_requests_total", route="r", status="200") == 4


@pytest.mark.parametrize("spread", [(0.0,), (0.005, 0.0050001, 10.0, 10.5), BUCKETS, (3e-4,) * 7])
def test_tallied_observations_expose_what_prometheus_observe_would(spread) -> None:
    """``observe`` tallies, ``sync`` adds the tallies to prometheus-client's values: the
    exposition is the one prometheus-client's own ``Histogram.observe`` and ``Counter.inc``
    give, bound for bound, whatever the durations and however many syncs."""
    reference = CollectorRegistry()
    counter = Counter("gateway_proxy_requests", "x", ["route", "status"], registry=reference)
    histogram = Histogram(
        "gateway_proxy_request_duration_seconds", "x", ["route"], buckets=BUCKETS,
        registry=reference,
    )  # fmt: skip
    metrics = Metrics(dict)
    for round_ in range(3):
        for seconds in spread:
            for status in ("200", "502"):
                metrics.observe("r", status, seconds * (round_ + 1))
                counter.labels("r", status).inc()
                histogram.labels("r").observe(seconds * (round_ + 1))
        metrics.sync()
    found = samples(metrics.render().decode())
    expected = samples(generate_latest(reference).decode())
    proxy_series = {k: v for k, v in found.items() if k[0].startswith("gateway_proxy_")}
    expected = {k: v for k, v in expected.items() if not k[0].endswith("_created")}
    # counts exactly; the sums are added in another order (rounding in the last bits)
    assert proxy_series == pytest.approx(expected, rel=1e-12, abs=0)
    assert {k: v for k, v in proxy_series.items() if not k[0].endswith("_sum")} == {
        k: v for k, v in expected.items() if not k[0].endswith("_sum")
    }


def test_a_scrape_drops_the_gauges_of_workers_that_are_gone(tmp_path) -> None:
    """Under N workers: a worker killed (uvicorn replaces it) never marked itself dead."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead, alive = int(gone.stdout), os.getpid()
    for name in (
        f"gauge_livemax_{dead}.db",
        f"gauge_livemin_{dead}.db",
        f"gauge_livemax_{alive}.db",
        f"counter_{dead}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    _forget_exited_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{dead}.db",  # what a worker counted always counts
        f"gauge_livemax_{alive}.db",
    ]


# --- the issuer ---------------------------------------------------------------------------------


def test_tokens_issued_are_counted_by_grant_type(
    client: TestClient, user, confidential: Registered
) -> None:
    issued = "gateway_tokens_issued_total"
    assert {value(scrape(client), issued, grant_type=g) for g in ("password", "refresh_token")} == {
        0
    }

    client_credentials(client, confidential, "profile")
    refresh_token = tokens(password_grant(client, confidential))["refresh_token"]
    tokens(refresh(client, confidential, refresh_token))
    tokens(redeem(client, confidential, get_code(client, confidential, user)))
    # refused: not counted
    assert password_grant(client, confidential, password="wrong").status_code == 400
    assert refresh(client, confidential, refresh_token).status_code == 400  # reused

    found = scrape(client)
    for grant in ("client_credentials", "password", "refresh_token", "authorization_code"):
        assert value(found, issued, grant_type=grant) == 1, grant


def test_token_failures_at_the_proxy_are_counted_by_reason(
    routed: TestClient, confidential: Registered
) -> None:
    reader = client_credentials(routed, confidential, "orders:read")
    claims = jwt.decode(reader, options={"verify_signature": False})
    gateway = routed.app.gateway  # type: ignore[attr-defined]
    expired = gateway.keyring.sign({**claims, "iat": time.time() - 7200, "exp": time.time() - 3600})
    weak = client_credentials(routed, confidential, "profile")

    assert routed.get("/orders/1").status_code == 401
    for token, status in [(expired, 401), (expired, 401), (weak, 403), (reader, 502)]:
        response = routed.get("/orders/1", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status

    found = scrape(routed)
    failures = {
        dict(labels)["reason"]: count
        for (name, labels), count in found.items()
        if name == "gateway_token_failures_total"
    }
    assert failures == {"missing_token": 1, "token_expired": 2, "insufficient_scope": 1}


def test_token_failures_at_the_decision_endpoint_are_counted_too(
    config: Config, storage: Storage
) -> None:
    """One decision core for both doors, so one count: an edge's refusals are in it."""
    route = RouteConfig(path="/orders", upstream=CLOSED_PORT, scopes=(("orders:read",),))
    app = create_app(dataclasses.replace(config, routes=(route,)))
    asks = {"X-Original-Method": "GET", "X-Original-URI": "/orders/1"}
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 4000)) as edge:
        assert edge.get("/decisions", headers=asks).status_code == 401
        bad = {**asks, "Authorization": "Bearer not-a-jwt"}
        assert edge.get("/decisions", headers=bad).status_code == 401
        found = scrape(edge)
    assert value(found, "gateway_token_failures_total", reason="missing_token") == 1
    assert value(found, "gateway_token_failures_total", reason="malformed_token") == 1


def test_login_throttling_is_counted_by_the_budget_that_refused(
    config: Config, storage: Storage
) -> None:
    """Each refusal of the real throttle, once, under the budget that made it."""
    make_user(storage, "alice@example.com")
    app_client = make_client(storage)
    throttling = dataclasses.replace(
        config, throttle=ThrottleConfig(max_failures=2, max_address_failures=3)
    )
    app = create_app(throttling)

    def guess(address: str, email: str = "alice@example.com", password: str = "guess") -> int:
        client = TestClient(app, base_url=ISSUER, client=(address, 4000))  # no second lifespan
        form = {"grant_type": "password", "username": email, "password": password}
        return client.post("/oauth/token", data=form, auth=app_client.auth).status_code

    with TestClient(app, base_url=ISSUER) as client:
        assert [guess("10.0.0.1") for _ in range(2)] == [400, 400]  # checked, wrong
        guess("10.0.0.1")  # alice at 10.0.0.1 again: the (user, address) budget refuses
        guess("10.0.0.2", email="bob@example.com")  # checked: 10.0.0.2 has failed now
        guess("10.0.0.1", email="carol@example.com")  # checked: 10.0.0.1's third failure
        guess("10.0.0.1", email="dave@example.com")  # the address budget refuses
        guess("10.0.0.2", password=PASSWORD)  # alice, past max_failures: the user's delay
        found = scrape(client)
    app.gateway.storage.dispose()
    throttled = {
        dict(labels)["key"]: count
        for (name, labels), count in found.items()
        if name == "gateway_login_throttled_total"
    }
    assert throttled == {"address": 1, "user_address": 1, "user": 1}


def test_database_errors_are_counted(config: Config, storage: Storage, tmp_path) -> None:
    """A database that cannot be opened: each request that needs it is one error, 503."""
    gone = dataclasses.replace(
        config, database=DatabaseConfig(url=f"sqlite:///{tmp_path}/gone/gateway.db")
    )
    with TestClient(create_app(gone), base_url=ISSUER) as client:
        before = scrape(client)
        response = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=("a", "b")
        )
        assert response.status_code == 503
        after = scrape(client)

    assert (
        value(after, "gateway_database_errors_total")
        == value(before, "gateway_database_errors_total") + 1
    )
    assert value(after, "gateway_revocation_staleness_seconds") == -1  # never synced
