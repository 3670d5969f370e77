"""A flood of password work cannot starve everything else (issue 8): 200 wrong-password grants
at once, real Argon2id (64 MiB, 4 lanes) in a real ``gateway serve``, while proxied requests
and client_credentials grants keep answering. The guesses past ``[passwords]`` bounds are
refused with 503 ``temporarily_unavailable`` and ``Retry-After``; none waits without end.

Latencies are printed, not asserted (``benchmarks/password_flood.py`` measures them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.echo import echo_upstream_thread
from tests.support.flood import flood_toml, measure
from tests.support.live import LiveGateway, running_gateway

pytestmark = pytest.mark.live

ATTEMPTS = 200


@pytest.fixture
def flooded(tmp_path: Path, database_url: str) -> Iterator[LiveGateway]:
    with (
        echo_upstream_thread() as upstream,
        running_gateway(
            tmp_path, database_url, extra_toml=flood_toml(upstream, max_concurrent=2, max_queued=8)
        ) as gateway,
    ):
        yield gateway


def test_proxy_and_client_credentials_answer_through_a_password_flood(
    flooded: LiveGateway,
) -> None:
    email = flooded.create_user("victim@example.com")
    app = flooded.create_client("Flooded app", grant_types=("password", "client_credentials"))

    flood = measure(flooded.base_url, app["client_id"], app["client_secret"], email, ATTEMPTS)

    for probe in flood.probes:
        print(probe.summary())
        assert probe.statuses, f"no {probe.name} request finished during the flood"
        assert set(probe.statuses) == {200}, probe.statuses
    answers = [(r.status_code, r.json()["error"]) for r in flood.responses]
    assert set(answers) == {(400, "invalid_grant"), (503, "temporarily_unavailable")}, answers
    refused = [r for r in flood.responses if r.status_code == 503]
    assert all(r.headers.get("retry-after") == "1" for r in refused)
    print(f"{ATTEMPTS} guesses in {flood.seconds:.2f} s, {len(refused)} refused with 503")
