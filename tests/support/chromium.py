"""The browser tests' tab (``Browser``: a page, its console errors, the requests refused for
leaving the loopback hosts) and how Chromium is launched; the fixtures that start it are in
``tests/support/fixtures/chromium.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from playwright.sync_api import Page

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


@dataclass
class Browser:
    page: Page
    console_errors: list[str] = field(default_factory=list)
    #: requests to anywhere but 127.0.0.1 and localhost, refused
    outside: list[str] = field(default_factory=list)
