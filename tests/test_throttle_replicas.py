"""Login throttling at two real replicas sharing one database: the budgets are shared (an
attacker alternating replicas gets one budget, not two); a guesser spread over addresses and
replicas makes every attempt for the user wait, at both, but the real user's known-device
cookie (and only a valid one of theirs) signs them in at once.

Both replicas trust 127.0.0.1 as a proxy, so each request names its client in
``X-Forwarded-For`` as a load balancer in front of them would."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest

from gateway.issuer.devices import DEVICE_COOKIE, DeviceCodec
from gateway.keys import session_secret
from tests.support.app import PASSWORD
from tests.support.live import LiveGateway, free_port, parse_page, running_gateway, wait_until
from tests.support.replicas import client_of

pytestmark = [pytest.mark.live, pytest.mark.scale]

MAX_FAILURES = 3
ADDRESS_BUDGET = 5
#: the cap of the user's delay: the longest real wait here
MAX_USER_DELAY = 2
#: ``[throttle] device_ttl``'s default
DEVICE_TTL = 2592000
REDIRECT_URI = "http://127.0.0.1:9/callback"


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


# --- a guesser spread over addresses and replicas; the real user's known device ------------


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


def at(gateway: LiveGateway, url: str) -> str:
    """``url`` (one of the issuer's, hence A's) sent to ``gateway`` instead."""
    return urlunsplit(urlsplit(url)._replace(netloc=urlsplit(gateway.base_url).netloc))


def sign_in(
    gateway: LiveGateway,
    url: str,
    email: str,
    address: str,
    device: str | None = None,
    password: str = PASSWORD,
) -> httpx.Response:
    """The login form at ``gateway``, from a browser at ``address`` carrying the known-device
    cookie ``device`` if given: the answer to the POST."""
    headers = {"X-Forwarded-For": address}
    with httpx.Client(follow_redirects=False, timeout=30, headers=headers) as browser:
        if device is not None:
            browser.cookies.set(DEVICE_COOKIE, device, domain="127.0.0.1", path="/oauth/")
        page = browser.get(at(gateway, url))
        assert page.status_code == 200, page.text
        form = parse_page(page.text).forms[0]
        fields = {**form.hidden, "email": email, "password": password}
        return browser.post(urljoin(at(gateway, url), form.action), data=fields)


def signed_in(response: httpx.Response) -> str:
    """The new known-device cookie of a successful sign-in."""
    assert response.status_code == 303, response.text
    return response.cookies[DEVICE_COOKIE]


def waits(response: httpx.Response) -> int:
    """A refusal of the login page: the form again (401) and how long to wait."""
    assert response.status_code == 401, response.text
    assert "Too many failed attempts" in response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= MAX_USER_DELAY
    return retry_after


@pytest.fixture
def login_url(replicas: tuple[LiveGateway, LiveGateway]) -> str:
    a, _ = replicas
    client = a.create_client(
        "web", grant_types=("authorization_code",), scope="", redirect_uris=(REDIRECT_URI,)
    )
    query = {"response_type": "code", "client_id": client["client_id"]}
    return f"{a.issuer}/oauth/authorize?{urlencode({**query, 'redirect_uri': REDIRECT_URI})}"


def test_during_an_attack_every_address_waits_but_the_users_known_device(
    replicas: tuple[LiveGateway, LiveGateway], login_url: str
) -> None:
    """Guesses for one user from many addresses at both replicas: a fresh address waits (the
    token endpoint's invalid_grant and the login page's 401, with Retry-After); the real user
    signs in at once from the browser they used before, and within the cap from another."""
    a, b = replicas
    email = a.create_user("erin@example.com")
    client = client_of(a, "password")
    device = signed_in(sign_in(a, login_url, email, "192.0.2.20"))
    attacker = Attacker(replicas, client, email)
    attacker.start()
    attacker.strike()
    for gateway, fresh in ((a, "203.0.113.30"), (b, "203.0.113.31")):
        response = attempt(gateway, client, email, PASSWORD, fresh)
        assert refused(response)  # the right password, not even checked
        assert 1 <= int(response.headers["retry-after"]) <= MAX_USER_DELAY
    waits(sign_in(b, login_url, email, "203.0.113.32"))

    attacker.strike()
    signed_in(sign_in(b, login_url, email, "192.0.2.21", device))  # at once, at the other replica

    attacker.strike()  # the attack pauses: another browser of the user's waits, then signs in
    waits(sign_in(a, login_url, email, "192.0.2.22"))
    wait_until(
        lambda: sign_in(a, login_url, email, "192.0.2.22").status_code == 303,
        "the user to sign in without a known device",
        MAX_USER_DELAY + 5,
    )


def test_foreign_forged_expired_exhausted_and_forgotten_devices_exempt_nothing(
    replicas: tuple[LiveGateway, LiveGateway], login_url: str
) -> None:
    a, b = replicas
    email = a.create_user("fay@example.com")
    other = a.create_user("gus@example.com")
    client = client_of(a, "password")
    home, elsewhere = "192.0.2.40", "192.0.2.41"
    device = signed_in(sign_in(a, login_url, email, home))
    stolen = signed_in(sign_in(b, login_url, email, elsewhere))
    foreign = signed_in(sign_in(a, login_url, other, home))
    attacker = Attacker(replicas, client, email)
    attacker.start()

    forged = device[:-1] + ("B" if device[-1] == "A" else "A")
    user_key = device.split(".")[0]
    codec = DeviceCodec(session_secret(a.keys_dir), secure=False, ttl=DEVICE_TTL)
    expired = codec.dumps(user_key, time.time() - DEVICE_TTL - 1)
    for n, spoiled in enumerate((foreign, forged, expired)):
        attacker.strike()
        waits(sign_in((a, b)[n % 2], login_url, email, home, spoiled))

    # a stolen cookie buys max_failures guesses (checked at once), then nothing more
    for n in range(MAX_FAILURES):
        response = sign_in((a, b)[n % 2], login_url, email, f"203.0.113.{50 + n}", stolen, "guess")
        assert response.status_code == 401 and "retry-after" not in response.headers
    waits(sign_in(b, login_url, email, "203.0.113.60", stolen))

    # forgotten at A (the CLI), honoured by B at once
    a.cli("user", "devices", "forget", "--user", email)
    attacker.strike()
    waits(sign_in(b, login_url, email, home, device))
