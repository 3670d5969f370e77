"""Login throttling at two real replicas sharing one database: the budgets are shared (an
attacker alternating replicas gets one budget, not two), and a guesser spread over addresses
and replicas makes every attempt for the user wait, at both, never longer than the cap.

Both replicas trust 127.0.0.1 as a proxy, so each request names its client in
``X-Forwarded-For`` as a load balancer in front of them would."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.live.support import LiveGateway, free_port, running_gateway, wait_until
from tests.scale.test_replicas import client_of

pytestmark = pytest.mark.live

MAX_FAILURES = 3
ADDRESS_BUDGET = 5
#: the cap of the user's delay: the longest real wait here
MAX_USER_DELAY = 2


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    port_a = free_port()
    shared: dict[str, Any] = {
        "issuer": f"http://127.0.0.1:{port_a}",
        "keys_dir": tmp_path / "keys",
        "extra_toml": (
            f"[throttle]\nmax_failures = {MAX_FAILURES}\n"
            f"max_address_failures = {ADDRESS_BUDGET}\nmax_user_delay = {MAX_USER_DELAY}\n"
            '[proxy]\ntrusted_proxies = ["127.0.0.1"]\n'
        ),
    }
    with (
        running_gateway(tmp_path / "a", database_url, port=port_a, **shared) as a,
        running_gateway(tmp_path / "b", database_url, **shared) as b,
    ):
        yield a, b


def attempt(
    gateway: LiveGateway, client: dict[str, Any], email: str, password: str, address: str
) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/oauth/token",
        data={"grant_type": "password", "username": email, "password": password},
        auth=(client["client_id"], client["client_secret"]),
        headers={"X-Forwarded-For": address},
        timeout=30,
    )


def refused(response: httpx.Response) -> bool:
    """Throttled: invalid_grant with Retry-After, the password not even checked."""
    if response.status_code != 400 or response.json()["error"] != "invalid_grant":
        pytest.fail(f"not an invalid_grant: {response.status_code} {response.text}")
    return "retry-after" in response.headers


def test_the_budget_of_a_user_at_an_address_is_shared(
    replicas: tuple[LiveGateway, LiveGateway],
) -> None:
    a, b = replicas
    email = a.create_user("carol@example.com")
    client = client_of(a, "password")
    for n in range(MAX_FAILURES):  # alternating: with a budget per process each would allow 3
        assert not refused(attempt((a, b)[n % 2], client, email, "guess", "203.0.113.7"))
    for gateway in (a, b):
        assert refused(attempt(gateway, client, email, PASSWORD, "203.0.113.7"))


def test_the_budget_of_an_address_is_shared(replicas: tuple[LiveGateway, LiveGateway]) -> None:
    a, b = replicas
    client = client_of(a, "password")
    email = a.create_user("dave@example.com")
    for n in range(ADDRESS_BUDGET):
        response = attempt((a, b)[n % 2], client, f"u{n}@example.com", "guess", "203.0.113.8")
        assert not refused(response)
    for gateway in (a, b):
        assert refused(attempt(gateway, client, email, PASSWORD, "203.0.113.8"))


# --- a guesser spread over addresses and replicas -----------------------------------------


class Attacker:
    """Wrong passwords for one user, each from a new address, at the two replicas in turn."""

    def __init__(
        self, replicas: tuple[LiveGateway, LiveGateway], client: dict[str, Any], email: str
    ) -> None:
        self.replicas = replicas
        self.client = client
        self.email = email
        self._next = itertools.count()

    def guess(self) -> httpx.Response:
        n = next(self._next)
        address = f"198.51.{100 + n // 250}.{n % 250 + 1}"
        return attempt(self.replicas[n % 2], self.client, self.email, "guess", address)

    def start(self) -> None:
        """``max_failures`` guesses, checked at once: the user's delay is on."""
        for _ in range(MAX_FAILURES):
            assert not refused(self.guess())

    def strike(self) -> None:
        """Guess until one is checked: from then the user's delay runs for the cap (once
        past ``max_failures`` + 1 failures), time enough for the checks that follow."""
        wait_until(lambda: not refused(self.guess()), "a guess to be checked", MAX_USER_DELAY + 5)


def test_a_fresh_address_waits_during_an_attack_at_both_replicas(
    replicas: tuple[LiveGateway, LiveGateway],
) -> None:
    """Guesses for one user from many addresses at both replicas: a fresh address waits for
    the user's delay at either (invalid_grant with Retry-After); the real user, from an address
    of their own, signs in within the cap."""
    a, b = replicas
    email = a.create_user("erin@example.com")
    client = client_of(a, "password")
    attacker = Attacker(replicas, client, email)
    attacker.start()
    attacker.strike()
    for gateway, fresh in ((a, "203.0.113.30"), (b, "203.0.113.31")):
        response = attempt(gateway, client, email, PASSWORD, fresh)
        assert refused(response)  # the right password, not even checked
        assert 1 <= int(response.headers["retry-after"]) <= MAX_USER_DELAY
    wait_until(
        lambda: attempt(b, client, email, PASSWORD, "192.0.2.20").status_code == 200,
        "the user to sign in once the delay passed",
        MAX_USER_DELAY + 5,
    )
