"""Known-device cookies (gateway/issuer/devices.py) at the login page: set at a successful
sign-in there (never by the password grant), with its attributes; during a guessing attack
spread over many addresses, the browser that carries one signs its user in at once, while
another browser, a forged, expired or foreign cookie, or one forgotten with ``gateway user
devices forget``, waits the user's delay. (The throttle's own rules: tests/test_throttle.py.)"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import GatewayApp, create_app
from gateway.config import Config
from gateway.issuer.devices import DEVICE_COOKIE
from gateway.issuer.session import COOKIE
from tests.support.app import Registered, make_user
from tests.support.issuer import authorize_url, login, password_grant
from tests.support.throttle import WRONG, age, from_, throttled

#: the default ``[throttle] device_ttl``: 30 days
DEVICE_TTL = 2592000


def device_cookie_header(response: httpx.Response) -> str | None:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(DEVICE_COOKIE)]
    assert len(found) <= 1, found
    return found[0] if found else None


def attack(app: GatewayApp, registered: Registered, email: str = "alice@example.com") -> None:
    """Wrong passwords for ``email`` from eight addresses: past the user's threshold."""
    for n in range(8):
        password_grant(from_(app, f"10.20.0.{n + 1}"), registered, email, WRONG)


def browser(app: GatewayApp, address: str) -> TestClient:
    return from_(app, address, follow_redirects=False)


def signed_in_before(client: TestClient, registered: Registered, email: str) -> None:
    """Sign in on the login page, then lose the session (it lasts hours; the device, days)."""
    assert login(client, authorize_url(registered), email).status_code == 303
    client.cookies.delete(COOKIE)


def refused_at_login(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert "Too many failed attempts" in response.text
    assert int(response.headers["retry-after"]) >= 1


# --- the cookie ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_sign_in_on_the_login_page_sets_a_device_cookie(
    config: Config, storage: Any, user: Any, confidential: Registered, scheme: str
) -> None:
    issuer = f"{scheme}://127.0.0.1:8000"
    app = create_app(dataclasses.replace(config, issuer=issuer))
    try:
        client = TestClient(app, base_url=issuer, follow_redirects=False)
        response = login(client, authorize_url(confidential), user.email)
        assert response.status_code == 303
        header = device_cookie_header(response)
        assert header is not None
        value, *attributes = [part.strip() for part in header.split(";")]
        expected = ["Path=/oauth/", f"Max-Age={DEVICE_TTL}", "HttpOnly", "SameSite=Lax"]
        assert attributes == expected + (["Secure"] if scheme == "https" else [])
        user_key, device_id, issued_ms, _tag = value.removeprefix(f"{DEVICE_COOKIE}=").split(".")
        assert user_key == app.gateway.throttle.user_key(user.email)  # never the e-mail
        assert "alice" not in value and len(device_id) == 22
        assert abs(int(issued_ms) / 1000 - time.time()) < 60
    finally:
        app.gateway.storage.dispose()


def test_the_cookie_max_age_follows_device_ttl(
    config: Config, storage: Any, user: Any, confidential: Registered
) -> None:
    throttle = dataclasses.replace(config.throttle, device_ttl=86400.0)
    app = create_app(dataclasses.replace(config, throttle=throttle))
    try:
        response = login(browser(app, "192.0.2.1"), authorize_url(confidential), user.email)
        assert "Max-Age=86400;" in (device_cookie_header(response) or "")
    finally:
        app.gateway.storage.dispose()


def test_no_device_cookie_without_a_sign_in_on_the_login_page(
    app: GatewayApp, user: Any, confidential: Registered
) -> None:
    client = browser(app, "192.0.2.2")
    failed = login(client, authorize_url(confidential), user.email, password=WRONG)
    assert failed.status_code == 401 and device_cookie_header(failed) is None
    granted = password_grant(client, confidential)
    assert granted.status_code == 200 and device_cookie_header(granted) is None


# --- during an attack ----------------------------------------------------------------------------


def test_the_users_browser_signs_in_at_once_during_an_attack(
    app: GatewayApp, storage: Any, user: Any, confidential: Registered
) -> None:
    own = browser(app, "192.0.2.10")
    signed_in_before(own, confidential, user.email)
    attack(app, confidential)
    url = authorize_url(confidential)
    refused_at_login(login(browser(app, "192.0.2.11"), url, user.email))  # another browser
    response = login(own, url, user.email)
    assert response.status_code == 303, response.text
    assert device_cookie_header(response) is not None  # renewed
    # the password grant never has the exemption, whatever cookies come with it
    assert own.cookies.get(DEVICE_COOKIE, path="/oauth/")
    assert throttled(password_grant(own, confidential)) >= 1


def test_a_failure_with_the_device_cookie_is_answered_as_wrong(
    app: GatewayApp, user: Any, confidential: Registered
) -> None:
    own = browser(app, "192.0.2.12")
    signed_in_before(own, confidential, user.email)
    attack(app, confidential)
    response = login(own, authorize_url(confidential), user.email, password=WRONG)
    assert response.status_code == 401
    assert "The email or password is not correct." in response.text
    assert "retry-after" not in response.headers


def _forged(app: GatewayApp, cookie: str) -> str:
    return cookie[:-1] + ("B" if cookie[-1] == "A" else "A")


def _expired(app: GatewayApp, cookie: str) -> str:
    gateway = app.gateway
    alice = gateway.throttle.user_key("alice@example.com")
    return gateway.devices.dumps(alice, time.time() - DEVICE_TTL - 1)


def _foreign(app: GatewayApp, cookie: str) -> str:
    gateway = app.gateway
    return gateway.devices.dumps(gateway.throttle.user_key("bob@example.com"))


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_forged, id="forged"),
        pytest.param(_expired, id="expired"),
        pytest.param(_foreign, id="another-users"),
    ],
)
def test_a_bad_device_cookie_waits_like_no_cookie(
    app: GatewayApp,
    user: Any,
    confidential: Registered,
    spoil: Callable[[GatewayApp, str], str],
) -> None:
    own = browser(app, "192.0.2.13")
    signed_in_before(own, confidential, user.email)
    cookie = own.cookies.get(DEVICE_COOKIE, path="/oauth/")
    assert cookie
    own.cookies.delete(DEVICE_COOKIE)
    own.cookies.set(DEVICE_COOKIE, spoil(app, cookie), domain="127.0.0.1", path="/oauth/")
    attack(app, confidential)
    refused_at_login(login(own, authorize_url(confidential), user.email))


def test_signing_in_as_another_user_replaces_the_device_cookie(
    app: GatewayApp, storage: Any, user: Any, confidential: Registered
) -> None:
    make_user(storage, "bob@example.com")
    shared = browser(app, "192.0.2.14")
    signed_in_before(shared, confidential, user.email)
    signed_in_before(shared, confidential, "bob@example.com")
    cookie = shared.cookies.get(DEVICE_COOKIE, path="/oauth/")
    assert cookie is not None
    assert cookie.startswith(app.gateway.throttle.user_key("bob@example.com") + ".")
    attack(app, confidential)  # alice's: bob's device vouches for nothing there
    refused_at_login(login(shared, authorize_url(confidential), user.email))


# --- gateway user devices forget -----------------------------------------------------------------


@pytest.fixture
def own(app: GatewayApp, user: Any, confidential: Registered) -> Iterator[TestClient]:
    client = browser(app, "192.0.2.15")
    signed_in_before(client, confidential, user.email)
    yield client


def test_forgotten_devices_wait_until_signed_in_again(
    app: GatewayApp,
    storage: Any,
    user: Any,
    confidential: Registered,
    own: TestClient,
    gw: Callable[..., tuple[Any, str, str]],
) -> None:
    code, out, _ = gw("user", "devices", "forget", "--user", "Alice@Example.com")
    assert code == 0
    assert "alice@example.com" in out
    attack(app, confidential)
    url = authorize_url(confidential)
    refused_at_login(login(own, url, user.email))
    age(storage, app.gateway.config.throttle.max_user_delay)  # the wait passes: signed in
    assert login(own, url, user.email).status_code == 303
    own.cookies.delete(COOKIE)
    attack(app, confidential)
    assert login(own, url, user.email).status_code == 303  # the new cookie counts


def test_forgetting_an_unknown_users_devices_is_an_error(
    gw: Callable[..., tuple[Any, str, str]],
) -> None:
    code, out, err = gw("user", "devices", "forget", "--user", "nobody@example.com")
    assert (code, out) == (2, "")
    assert err.endswith("gateway: no user with email nobody@example.com\n")
