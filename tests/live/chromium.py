"""Debian's headless Chromium for the live browser tests, as pytest fixtures (the live suite's
conftest makes them everyone's there): ``chromium`` (the executable, or the test skipped),
``chromium_context`` (one empty profile per test module) and ``browser`` (a new tab with no
cookies, that records console errors and refuses non-loopback hosts: ``127.0.0.1``, and
``localhost``, another site to the browser, for the cross-site tests).

Chromium is ``/usr/bin/chromium``, or ``$GATEWAY_BROWSER``; without it the tests that use it
are skipped, unless ``GATEWAY_REQUIRE_BROWSER=1`` makes its absence a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Route, sync_playwright

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


#: the hosts a test may browse: two sites on one machine (Chromium resolves localhost itself)
LOOPBACK = ("127.0.0.1", "localhost")


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
    #: requests to anywhere but 127.0.0.1 and localhost, refused
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
        if urlsplit(route.request.url).hostname in LOOPBACK:
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
