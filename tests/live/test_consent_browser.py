"""The login and consent pages in a real headless Chromium, against a live server.

Chromium is Debian's (``/usr/bin/chromium``, or ``$GATEWAY_BROWSER``); without it these tests
are skipped, unless ``GATEWAY_REQUIRE_BROWSER=1`` makes its absence a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from authlib.common.security import generate_token
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Route, sync_playwright

from tests.live.oauth import oauth_client
from tests.live.support import PASSWORD, LiveGateway, RedirectTarget, query_of

pytestmark = [pytest.mark.live, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCOPES = ("orders:read", "orders:write")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("GATEWAY_BROWSER") or "/usr/bin/chromium"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        reason = f"no Chromium at {path}: install Debian's chromium or set GATEWAY_BROWSER"
        if os.environ.get("GATEWAY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"GATEWAY_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return path


@dataclass
class Browser:
    page: Page
    console_errors: list[str] = field(default_factory=list)
    #: requests to anywhere but 127.0.0.1, refused
    outside: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def chromium_context(
    chromium: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a new, empty profile
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def browser(chromium_context: BrowserContext) -> Iterator[Browser]:
    """A new tab with no cookies, that records console errors and refuses non-loopback hosts."""
    chromium_context.clear_cookies()
    page = chromium_context.new_page()
    seen = Browser(page)

    def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            seen.outside.append(route.request.url)
            route.abort()

    def on_console(message: ConsoleMessage) -> None:
        # CSP violations and failed loads are reported as console errors
        if message.type == "error":
            seen.console_errors.append(f"{message.text} ({message.location})")

    page.route("**/*", loopback_only)
    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.console_errors.append(str(error)))
    try:
        yield seen
    finally:
        page.close()


@pytest.fixture
def web_app(live_gateway: LiveGateway, redirect_target: RedirectTarget) -> dict[str, Any]:
    """A client of its own per test: consent given to one is remembered."""
    return live_gateway.create_client(
        "Orders dashboard",
        grant_types=("authorization_code", "refresh_token"),
        scope=" ".join(SCOPES),
        redirect_uris=(redirect_target.redirect_uri,),
    )


@pytest.mark.parametrize("decision", ["Allow", "Deny"])
def test_login_and_consent_in_chromium(
    browser: Browser,
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    web_app: dict[str, Any],
    alice: str,
    decision: str,
    tmp_path: Path,
) -> None:
    page = browser.page
    metadata = live_gateway.metadata()
    redirect_uri = redirect_target.redirect_uri
    with oauth_client(
        web_app, scope=" ".join(SCOPES), redirect_uri=redirect_uri, code_challenge_method="S256"
    ) as oauth:
        verifier = generate_token(64)
        url, state = oauth.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier
        )

        page.goto(url)
        assert page.title() == "Sign in · Gateway"
        assert web_app["name"] in page.locator("main").inner_text()
        page.screenshot(path=tmp_path / "login.png", full_page=True)
        page.get_by_label("Email").fill(alice)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        heading = page.get_by_role("heading", name=f"Authorize {web_app['name']}")
        heading.wait_for()
        scopes = page.get_by_role("list", name="Requested permissions").get_by_role("listitem")
        assert scopes.all_inner_texts() == list(SCOPES)
        assert alice in page.locator("main").inner_text()
        page.screenshot(path=tmp_path / "consent.png", full_page=True)

        page.get_by_role("button", name=decision, exact=True).click()
        page.wait_for_url(lambda now: now.startswith(redirect_uri + "?"))

        back = query_of(page.url)
        assert back["state"] == state
        assert back["iss"] == metadata["issuer"]  # RFC 9207
        assert redirect_target.callbacks()[-1] == back  # the client really got the request
        if decision == "Allow":
            assert "error" not in back
            token = oauth.fetch_token(
                metadata["token_endpoint"],
                authorization_response=page.url,
                state=state,
                code_verifier=verifier,
            )
            assert set(token["scope"].split()) == set(SCOPES)
        else:
            assert back["error"] == "access_denied"
            assert "code" not in back

    for shot in ("login.png", "consent.png"):
        assert (tmp_path / shot).stat().st_size > 0
    assert browser.console_errors == []
    assert browser.outside == []
