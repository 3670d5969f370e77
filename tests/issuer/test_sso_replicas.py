"""Single sign-on and RP-Initiated Logout at two real ``gateway serve`` replicas sharing one
database and one ``keys/`` folder: a login at A is a session at B; a logout at A ends it at B
too, even for a copy of the pre-logout cookie replayed there; with
``sessions.logout_revokes_tokens`` the session's tokens die at B's proxy.

The browser is an httpx client keeping the cookie (both replicas are on 127.0.0.1, so it
sends the cookie to either, as a browser behind one load balancer would)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import pytest

from gateway.demo.echo import echo_upstream_thread
from gateway.issuer.session import COOKIE
from tests.support.live import LiveGateway, free_port, query_of, running_gateway, wait_until
from tests.support.oauth import AuthorizationFlow
from tests.support.replicas import proxied

pytestmark = [pytest.mark.live, pytest.mark.scale]

SCOPE = "openid orders:read"
REDIRECT_URI = "http://127.0.0.1:9/callback"
LOGGED_OUT = "http://127.0.0.1:9/bye"


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    """A and B, one deployment (A's URL is the issuer); each proxies /api to an echo upstream;
    logout revokes the session's grants."""
    port_a = free_port()
    with echo_upstream_thread() as upstream:
        shared: dict[str, Any] = {
            "issuer": f"http://127.0.0.1:{port_a}",
            "keys_dir": tmp_path / "keys",
            "extra_toml": (
                "[sessions]\nlogout_revokes_tokens = true\n"
                f'[[routes]]\npath = "/api"\nupstream = "{upstream}"\nscopes = ["orders:read"]\n'
            ),
        }
        with (
            running_gateway(tmp_path / "a", database_url, port=port_a, **shared) as a,
            running_gateway(tmp_path / "b", database_url, **shared) as b,
        ):
            yield a, b


def at(gateway: LiveGateway, url: str) -> str:
    """``url`` (one of the issuer's, hence A's) sent to ``gateway`` instead."""
    return urlunsplit(urlsplit(url)._replace(netloc=urlsplit(gateway.base_url).netloc))


def silent(browser: httpx.Client, gateway: LiveGateway, flow: AuthorizationFlow) -> dict[str, str]:
    """``prompt=none`` at ``gateway``: where the redirect back to the client says to go."""
    answer = browser.get(at(gateway, flow.url) + "&prompt=none")
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"].startswith(REDIRECT_URI + "?")
    return query_of(answer.headers["location"])


def test_logout_at_a_ends_the_session_at_b_even_for_a_replayed_cookie(
    replicas: tuple[LiveGateway, LiveGateway],
) -> None:
    a, b = replicas
    email = a.create_user("frank@example.com")
    client = a.create_client(
        "web",
        grant_types=("authorization_code", "refresh_token"),
        scope=SCOPE,
        redirect_uris=(REDIRECT_URI,),
        post_logout_redirect_uris=(LOGGED_OUT,),
    )
    with AuthorizationFlow(a, client, REDIRECT_URI, SCOPE, nonce="n-1") as flow:
        assert "code" in flow.decide(flow.login(email), "allow")
        token = flow.fetch_token()
        browser = flow.browser
        old_cookie = browser.cookies[COOKIE]
        claims = jwt.decode(token["id_token"], options={"verify_signature": False})
        assert claims["nonce"] == "n-1" and claims["sid"]
        assert proxied(b, token["access_token"]) == 200

        # single sign-on across replicas: B knows A's session (and the remembered consent)
        assert "code" in silent(browser, b, flow)

        logout = browser.get(
            f"{a.base_url}/oauth/logout",
            params={
                "id_token_hint": token["id_token"],
                "post_logout_redirect_uri": LOGGED_OUT,
                "state": "bye",
            },
        )
        assert logout.status_code == 302, logout.text
        assert logout.headers["location"] == LOGGED_OUT + "?state=bye"
        assert COOKIE not in browser.cookies  # cleared (Max-Age=0)

        # the pre-logout cookie, replayed at the other replica, signs no one in
        browser.cookies.set(COOKIE, old_cookie, domain="127.0.0.1", path="/oauth")
        for gateway in (b, a):
            assert silent(browser, gateway, flow)["error"] == "login_required"
            page = browser.get(at(gateway, flow.url))
            assert page.status_code == 200 and 'value="login"' in page.text

    # logout_revokes_tokens: the session's grant is revoked, at B's proxy as well
    for gateway in (a, b):
        wait_until(
            lambda g=gateway: proxied(g, token["access_token"]) == 401,
            f"{gateway.base_url} to refuse the logged-out session's token",
            5,
        )
    refreshed = httpx.post(
        f"{b.base_url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert refreshed.json()["error"] == "invalid_grant"
