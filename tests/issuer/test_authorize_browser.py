"""The login and consent pages in a real headless Chromium, against a live server.

Chromium as ``tests/support/fixtures/chromium.py`` provides it (skipped without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from authlib.common.security import generate_token

from tests.support.chromium import Browser
from tests.support.live import PASSWORD, LiveGateway, RedirectTarget, query_of
from tests.support.oauth import oauth_client

pytestmark = [pytest.mark.live, pytest.mark.browser]

SCOPES = ("orders:read", "orders:write")


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
