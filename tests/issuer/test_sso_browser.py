"""Single sign-on, prompt=none and RP-Initiated Logout in a real headless Chromium against a
live ``gateway serve``: one login serves several clients, logout ends the session for good
(the pre-logout cookie, put back into the browser, signs no one in).

Chromium as ``tests/support/fixtures/chromium.py`` provides it (skipped without it)."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from playwright.sync_api import Page

from tests.support.chromium import Browser
from tests.support.live import PASSWORD, LiveGateway, RedirectTarget, query_of
from tests.support.oauth import oauth_client

pytestmark = [pytest.mark.live, pytest.mark.browser]

SCOPES = "openid orders:read"


def discovery(gateway: LiveGateway) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/.well-known/openid-configuration")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def clients(live_gateway: LiveGateway, redirect_target: RedirectTarget) -> dict[str, Any]:
    """Two third-party relying parties and a first-party one, new for each test."""
    uri = redirect_target.redirect_uri
    made = {}
    for key, name, first_party in (
        ("orders", "Orders web", False),
        ("billing", "Billing web", False),
        ("account", "Account centre", True),
    ):
        made[key] = live_gateway.create_client(
            name,
            grant_types=("authorization_code", "refresh_token"),
            scope=SCOPES,
            redirect_uris=(uri,),
            post_logout_redirect_uris=(uri + "?logged_out=1",),
            first_party=first_party,
        )
    return made


class Flow:
    """One authorization request of ``client`` (PKCE), and its code exchanged."""

    def __init__(self, gateway: LiveGateway, client: dict[str, Any], uri: str, **params: str):
        self.config = discovery(gateway)
        self.redirect_uri = uri
        self.oauth = oauth_client(
            client, scope=SCOPES, redirect_uri=uri, code_challenge_method="S256"
        )
        self.verifier = generate_token(48)
        self.url, self.state = self.oauth.create_authorization_url(
            self.config["authorization_endpoint"], code_verifier=self.verifier, **params
        )

    def back(self, page: Page) -> dict[str, str]:
        page.wait_for_url(lambda now: now.startswith(self.redirect_uri + "?"))
        back = query_of(page.url)
        assert back["state"] == self.state
        assert back["iss"] == self.config["issuer"]
        return back

    def id_token(self, page: Page) -> tuple[str, dict[str, Any]]:
        token = self.oauth.fetch_token(
            self.config["token_endpoint"],
            authorization_response=page.url,
            state=self.state,
            code_verifier=self.verifier,
        )
        self.oauth.close()
        raw = token["id_token"]
        return raw, jwt.decode(raw, options={"verify_signature": False})


def sign_in(page: Page, email: str) -> None:
    assert page.title() == "Sign in · Gateway"
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_one_login_serves_three_clients(
    browser: Browser,
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    clients: dict[str, Any],
    alice: str,
) -> None:
    page, uri = browser.page, redirect_target.redirect_uri

    first = Flow(live_gateway, clients["orders"], uri)
    page.goto(first.url)
    sign_in(page, alice)
    page.get_by_role("heading", name="Authorize Orders web").wait_for()
    assert "Confirm who you are" in page.locator("main").inner_text()
    page.get_by_role("button", name="Allow", exact=True).click()
    assert "code" in first.back(page)
    _, orders_claims = first.id_token(page)

    # a second client in the same browser: no login form, straight to its consent page
    second = Flow(live_gateway, clients["billing"], uri)
    page.goto(second.url)
    page.get_by_role("heading", name="Authorize Billing web").wait_for()
    assert page.get_by_label("Password").count() == 0
    page.get_by_role("button", name="Allow", exact=True).click()
    assert "code" in second.back(page)

    # a first-party client: straight back with a code, no page at all
    third = Flow(live_gateway, clients["account"], uri)
    page.goto(third.url)
    assert "code" in third.back(page)
    _, account_claims = third.id_token(page)
    assert account_claims["sid"] == orders_claims["sid"]
    assert account_claims["auth_time"] == orders_claims["auth_time"]

    # the first client again: consent remembered, straight back
    again = Flow(live_gateway, clients["orders"], uri)
    page.goto(again.url)
    assert "code" in again.back(page)
    assert browser.console_errors == []
    assert browser.outside == []


def test_prompt_none_without_and_with_a_session(
    browser: Browser,
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    clients: dict[str, Any],
    alice: str,
) -> None:
    page, uri = browser.page, redirect_target.redirect_uri

    silent = Flow(live_gateway, clients["account"], uri, prompt="none")
    page.goto(silent.url)
    back = silent.back(page)
    assert back["error"] == "login_required"
    assert "code" not in back

    login = Flow(live_gateway, clients["orders"], uri)
    page.goto(login.url)
    sign_in(page, alice)
    page.get_by_role("heading", name="Authorize Orders web").wait_for()

    # signed in now; the billing client was never allowed: consent_required, no page
    billing = Flow(live_gateway, clients["billing"], uri, prompt="none")
    page.goto(billing.url)
    assert billing.back(page)["error"] == "consent_required"

    silent = Flow(live_gateway, clients["account"], uri, prompt="none")
    page.goto(silent.url)
    assert "code" in silent.back(page)
    assert browser.console_errors == []


def test_logout_with_a_hint_and_the_old_cookie_replayed(
    browser: Browser,
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    clients: dict[str, Any],
    alice: str,
) -> None:
    page, uri = browser.page, redirect_target.redirect_uri
    context = page.context

    flow = Flow(live_gateway, clients["account"], uri)
    page.goto(flow.url)
    sign_in(page, alice)
    flow.back(page)
    id_token, _ = flow.id_token(page)
    before_logout = [c for c in context.cookies() if c["name"] == "gateway_session"]
    assert len(before_logout) == 1

    end_session = discovery(live_gateway)["end_session_endpoint"]
    logout = httpx.URL(
        end_session,
        params={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": uri + "?logged_out=1",
            "state": "bye",
        },
    )
    page.goto(str(logout))
    page.wait_for_url(lambda now: now.startswith(uri + "?logged_out=1"))
    assert query_of(page.url) == {"logged_out": "1", "state": "bye"}
    assert redirect_target.callbacks()[-1] == {"logged_out": "1", "state": "bye"}
    assert [c for c in context.cookies() if c["name"] == "gateway_session"] == []

    # signed out: the first-party client gets the login form again
    again = Flow(live_gateway, clients["account"], uri)
    page.goto(again.url)
    assert page.title() == "Sign in · Gateway"

    # the pre-logout cookie, put back: still signed out (the server-side session ended)
    context.clear_cookies()
    context.add_cookies(before_logout)  # type: ignore[arg-type]
    replay = Flow(live_gateway, clients["account"], uri)
    page.goto(replay.url)
    assert page.title() == "Sign in · Gateway"
    silent = Flow(live_gateway, clients["account"], uri, prompt="none")
    page.goto(silent.url)
    assert silent.back(page)["error"] == "login_required"
    assert browser.console_errors == []
