"""``gateway serve --workers 2``: one scrape of ``/metrics``, whichever worker answers it,
reports the sum of both workers (issue 8), and a restart starts again from zero.

The workers' files are found through the workers themselves (``/proc``): the directory named
in their environment, and one histogram file per worker that proxied a request.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.demo.echo import echo_upstream_thread
from gateway.metrics import MULTIPROC_DIR
from tests.support.live import LiveGateway, running_gateway, wait_until
from tests.support.metrics import Samples, samples, value

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(sys.platform != "linux", reason="finds the workers through /proc"),
]

ROUTE = '\n[[routes]]\nname = "echo"\npath = "/echo"\nupstream = "{}"\npublic = true\n'
BATCH = 20
GRANTS = 10
SCRAPES = 8


@pytest.fixture
def upstream() -> Iterator[str]:
    with echo_upstream_thread() as url:
        yield url


def two_workers(directory: Path, database_url: str, upstream: str) -> LiveGateway:
    return running_gateway(
        directory, database_url, extra_toml=ROUTE.format(upstream), serve_args=("--workers", "2")
    )


def metrics_directory(gateway: LiveGateway) -> Path:
    """The directory ``serve`` gave its workers."""
    pid = gateway.process.pid
    found = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        for entry in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
            name, _, directory = entry.decode().partition("=")
            if name == MULTIPROC_DIR:
                found.add(Path(directory))
    assert len(found) == 1, found
    return found.pop()


def workers_that_proxied(directory: Path) -> set[str]:
    return {path.stem.rpartition("_")[2] for path in directory.glob("histogram_*.db")}


def proxy(gateway: LiveGateway, count: int) -> None:
    """``count`` requests on new connections, eight at a time: each worker accepts some."""

    def one(_: int) -> int:
        return httpx.get(f"{gateway.base_url}/echo/{_}", timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(count))) == {200}


def scrape(gateway: LiveGateway) -> Samples:
    response = httpx.get(f"{gateway.base_url}/metrics", timeout=10)  # a new connection each
    assert response.status_code == 200
    return samples(response.text)


def totals(found: Samples) -> tuple[float, float, float]:
    """Proxied requests, their latency observations, client_credentials tokens issued."""
    series = [
        ("gateway_proxy_requests_total", {"route": "echo", "status": "200"}),
        ("gateway_proxy_request_duration_seconds_count", {"route": "echo"}),
        ("gateway_tokens_issued_total", {"grant_type": "client_credentials"}),
    ]
    counts = [found.get((name, frozenset(labels.items())), 0.0) for name, labels in series]
    return counts[0], counts[1], counts[2]


def test_every_scrape_sums_both_workers_and_a_restart_starts_from_zero(
    tmp_path: Path, database_url: str, upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with two_workers(tmp_path / "first", database_url, upstream) as gateway:
        directory = metrics_directory(gateway)
        app = gateway.create_client("Metered", grant_types=("client_credentials",))
        for _ in range(GRANTS):
            response = httpx.post(
                f"{gateway.base_url}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(app["client_id"], app["client_secret"]),
            )
            assert response.status_code == 200
        sent = 0
        while len(workers_that_proxied(directory)) < 2 and sent < 50 * BATCH:
            proxy(gateway, BATCH)
            sent += BATCH
        assert len(workers_that_proxied(directory)) == 2, f"one worker took all {sent}"

        # a worker counts a request once its response has gone: wait for the last one
        expected = (sent, sent, GRANTS)
        wait_until(lambda: totals(scrape(gateway)) == expected, f"totals {expected}")
        for _ in range(SCRAPES):
            found = scrape(gateway)
            assert totals(found) == expected
            assert value(found, "gateway_signing_keys") == 1
            assert 0 <= value(found, "gateway_revocation_staleness_seconds") < 60
        stale = tmp_path / "stale"
        stale.mkdir()
        for path in directory.iterdir():
            (stale / path.name).write_bytes(path.read_bytes())
    assert not directory.exists()  # removed at exit

    # a new run, even one started with an old directory inherited, counts from zero
    monkeypatch.setenv(MULTIPROC_DIR, str(stale))
    with two_workers(tmp_path / "second", database_url, upstream) as gateway:
        assert metrics_directory(gateway) not in (directory, stale)
        assert totals(scrape(gateway)) == (0, 0, 0)
        proxy(gateway, 3)
        wait_until(lambda: totals(scrape(gateway)) == (3, 3, 0), "3 requests counted")
        assert totals(scrape(gateway)) == (3, 3, 0)
