"""The login pages against pages that are not theirs, in a real headless Chromium and a live
``gateway serve`` (issue 15 §3, §4).

- Same origin: a page an upstream serves through a public route of the gateway shares the
  login pages' origin. Its script can read the consent page (a CSRF token included), but its
  POST of Allow is refused: a ``fetch()`` is no person's navigation. Its upstream's
  ``Set-Cookie: gateway_session=...; Path=/oauth`` never reaches the browser.
- Another site (``http://localhost:PORT`` is another site to the browser than
  ``http://127.0.0.1:PORT``): its auto-submitted forms to ``/oauth/logout`` and
  ``/oauth/authorize`` carry no SameSite=Lax cookie and replace none; the user is still signed
  in after, and what they saw is the logout confirmation page, which still works.
- What Chromium sends in each of those cases, which the rules rely on.

Chromium as ``tests/support/fixtures/chromium.py`` provides it (skipped without it)."""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Page
from starlette.datastructures import Headers

from gateway.issuer.fetch_metadata import is_navigation
from tests.support.chromium import Browser
from tests.support.databases import fresh_database_url
from tests.support.live import PASSWORD, LiveGateway, RedirectTarget, query_of, running_gateway

pytestmark = [pytest.mark.live, pytest.mark.browser]

EMAIL = "origin@example.com"
COOKIE = "gateway_session"


class Site:
    """A web server on 127.0.0.1: the upstream of the gateway's public route ``/pub``, and,
    reached as ``http://localhost:PORT``, another site. It serves the pages a test gives it
    and records what it was asked: method, host, path, Fetch Metadata and cookies."""

    def __init__(self) -> None:
        #: path -> (status, headers, body)
        self.pages: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
        self.seen: list[dict[str, str]] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site._answer(self)

            def do_POST(self) -> None:
                site._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        #: the same server as another site
        self.other_site = f"http://localhost:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def page(self, path: str, body: str, *headers: tuple[str, str], status: int = 200) -> None:
        self.pages[path] = (status, list(headers), body.encode())

    def requests(self, path: str) -> list[dict[str, str]]:
        return [seen for seen in self.seen if seen["path"] == path]

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        handler.rfile.read(length)
        seen = {k.lower(): v for k, v in handler.headers.items() if k.lower().startswith("sec-")}
        seen |= {"method": handler.command, "path": handler.path}
        seen |= {
            "host": handler.headers.get("host", ""),
            "cookie": handler.headers.get("cookie", ""),
        }
        self.seen.append(seen)
        status, headers, body = self.pages.get(urlsplit(handler.path).path, (404, [], b"not found"))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def auto_post(action: str, fields: dict[str, str]) -> str:
    """Another site's page that posts a form to ``action`` as soon as it loads."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        f'<!doctype html><title>another site</title><form id="f" method="post" '
        f'action="{html.escape(action)}">{inputs}</form>'
        '<script>document.getElementById("f").submit()</script>'
    )


#: an upstream's page that reads the consent page for ``__AUTHORIZE__`` and posts Allow with
#: its CSRF token
ALLOW_BY_SCRIPT = """<!doctype html><title>an upstream's page</title><script>
(async () => {
  const url = __AUTHORIZE__;
  const shown = await fetch(url);
  const page = await shown.text();
  const token = page.match(/name="csrf_token" value="([^"]+)"/);
  const posted = await fetch(url, {method: "POST", redirect: "manual",
    body: new URLSearchParams({csrf_token: token ? token[1] : "", action: "allow"})});
  window.result = {shown: shown.status, consentPage: page.includes('value="allow"'),
                   token: token !== null, posted: posted.status};
})();
</script>"""


@dataclass
class Deployment:
    gateway: LiveGateway
    site: Site
    #: first-party: signed in, its authorization answers at once, with no page
    home: dict[str, Any]
    redirect_uri: str

    def authorize_url(self, client: dict[str, Any], **params: str) -> str:
        challenge = base64.urlsafe_b64encode(hashlib.sha256(b"x" * 43).digest())
        query = {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": self.redirect_uri,
            "scope": "openid",
            "state": "st",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            **params,
        }
        return f"{self.gateway.base_url}/oauth/authorize?{urlencode(query)}"

    def consented(self) -> set[str]:
        listed = json.loads(self.gateway.cli("consent", "list", "--user", EMAIL, "--json"))
        return {entry["client_id"] for entry in listed}

    def cookies_dropped(self) -> float:
        text = httpx.get(f"{self.gateway.base_url}/metrics").text
        found = re.search(
            r'^gateway_upstream_cookies_dropped_total\{route="pub"\} (\S+)$', text, re.M
        )
        return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, redirect_target: RedirectTarget
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("origin")
    site = Site()
    route = f'\n[[routes]]\nname = "pub"\npath = "/pub"\npublic = true\nupstream = "{site.url}"\n'
    try:
        for database_url in fresh_database_url(folder):
            with running_gateway(folder / "gateway", database_url, extra_toml=route) as gateway:
                gateway.create_user(EMAIL)
                uri = redirect_target.redirect_uri
                home = gateway.create_client(
                    "Home",
                    grant_types=("authorization_code",),
                    scope="openid",
                    redirect_uris=(uri,),
                    post_logout_redirect_uris=(uri + "?logged_out=1",),
                    first_party=True,
                )
                yield Deployment(gateway, site, home, uri)
    finally:
        site.close()


@pytest.fixture
def other_app(deployment: Deployment) -> dict[str, Any]:
    """A third-party client the user never allowed (one per test: none sees another's)."""
    return deployment.gateway.create_client(
        "Other app",
        grant_types=("authorization_code",),
        scope="openid",
        redirect_uris=(deployment.redirect_uri,),
    )


def session_cookie(page: Page) -> str | None:
    found = [c["value"] for c in page.context.cookies() if c["name"] == COOKIE]
    assert len(found) <= 1, found
    return found[0] if found else None


def sign_in(page: Page, deployment: Deployment) -> str:
    """Sign in through the first-party client; the session cookie's value."""
    page.goto(deployment.authorize_url(deployment.home))
    assert page.title() == "Sign in · Gateway"
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda now: now.startswith(deployment.redirect_uri + "?"))
    cookie = session_cookie(page)
    assert cookie is not None
    return cookie


def assert_still_signed_in(page: Page, deployment: Deployment, cookie: str) -> None:
    """The same cookie, and it still counts: the next authorization needs no login."""
    assert session_cookie(page) == cookie
    page.goto(deployment.authorize_url(deployment.home))
    page.wait_for_url(lambda now: now.startswith(deployment.redirect_uri + "?"))
    assert "code" in query_of(page.url)


# --- same origin: an upstream's page and cookies ------------------------------------------------


def test_an_upstream_page_cannot_allow_by_script(
    browser: Browser, deployment: Deployment, other_app: dict[str, Any]
):
    page = browser.page
    cookie = sign_in(page, deployment)
    url = deployment.authorize_url(other_app)
    deployment.site.page(
        "/pub/allow.html", ALLOW_BY_SCRIPT.replace("__AUTHORIZE__", json.dumps(url))
    )

    page.goto(f"{deployment.gateway.base_url}/pub/allow.html")  # the gateway's origin
    result = page.wait_for_function("() => window.result").json_value()
    # same origin: the script reads the page and its token (docs/security.md says why the
    # issuer wants a host of its own); its POST is not a person's navigation
    assert result == {"shown": 200, "consentPage": True, "token": True, "posted": 403}
    assert other_app["client_id"] not in deployment.consented()
    assert_still_signed_in(page, deployment, cookie)
    assert browser.outside == []


def test_an_upstream_cannot_set_the_session_cookie(browser: Browser, deployment: Deployment):
    page = browser.page
    cookie = sign_in(page, deployment)
    before = deployment.cookies_dropped()
    deployment.site.page(
        "/pub/cookies",
        "<!doctype html><title>cookies</title><p>set</p>",
        ("Set-Cookie", f"{COOKIE}=forged; Path=/oauth; HttpOnly; SameSite=Lax"),
        ("Set-Cookie", "tracker=1; Path=/oauth/"),
        ("Set-Cookie", "prefs=dark; Path=/pub"),
    )
    page.goto(f"{deployment.gateway.base_url}/pub/cookies")
    names = {c["name"]: c for c in page.context.cookies()}
    assert names["prefs"]["value"] == "dark"  # the upstream's own cookie passes
    assert "tracker" not in names
    assert deployment.cookies_dropped() == before + 2
    assert_still_signed_in(page, deployment, cookie)


# --- another site: forms that post to the gateway ---------------------------------------------


def test_another_sites_logout_form_shows_the_confirmation(browser: Browser, deployment: Deployment):
    page = browser.page
    cookie = sign_in(page, deployment)
    gateway, site = deployment.gateway, deployment.site
    logged_out = deployment.redirect_uri + "?logged_out=1"
    fields = {
        "client_id": deployment.home["client_id"],
        "post_logout_redirect_uri": logged_out,
        "state": "bye",
    }
    site.page("/logout.html", auto_post(f"{gateway.base_url}/oauth/logout", fields))

    page.goto(f"{site.other_site}/logout.html")
    page.get_by_role("heading", name="Sign out?").wait_for()
    assert urlsplit(page.url).path == "/oauth/logout"
    assert "Home" in page.locator("main").inner_text()
    assert session_cookie(page) == cookie  # not replaced: the user is still signed in
    # posing as the confirmation itself: refused, a cross-site form is no person's navigation
    forged = {**fields, "action": "logout", "csrf_token": "x"}
    site.page("/forged.html", auto_post(f"{gateway.base_url}/oauth/logout", forged))
    page.goto(f"{site.other_site}/forged.html")
    page.get_by_role("heading", name="This request cannot be completed").wait_for()
    assert "sent from its own page" in page.locator("main").inner_text()
    assert_still_signed_in(page, deployment, cookie)

    # the confirmation the other site led to works: the user signs out by pressing the button
    page.goto(f"{site.other_site}/logout.html")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(lambda now: now.startswith(logged_out))
    assert query_of(page.url) == {"logged_out": "1", "state": "bye"}
    assert session_cookie(page) is None
    page.goto(deployment.authorize_url(deployment.home))
    assert page.title() == "Sign in · Gateway"
    assert browser.outside == []


def test_another_sites_authorize_form_changes_nothing(
    browser: Browser, deployment: Deployment, other_app: dict[str, Any]
):
    page = browser.page
    cookie = sign_in(page, deployment)
    url = deployment.authorize_url(other_app)
    deployment.site.page("/allow.html", auto_post(url, {"action": "allow"}))

    page.goto(f"{deployment.site.other_site}/allow.html")
    page.get_by_role("heading", name="This request cannot be completed").wait_for()
    assert session_cookie(page) == cookie
    assert other_app["client_id"] not in deployment.consented()
    assert_still_signed_in(page, deployment, cookie)


# --- what Chromium sends ----------------------------------------------------------------------


def test_what_chromium_sends(browser: Browser, deployment: Deployment):
    """The Fetch Metadata and SameSite=Lax cookies of each case the pages' rules tell apart,
    and how ``is_navigation`` reads them."""
    page, site = browser.page, deployment.site
    own, other = site.url, site.other_site
    target = "<!doctype html><title>target</title>"
    site.page("/probe/target", target)
    site.page("/probe/set", target, ("Set-Cookie", "probe=1; Path=/; HttpOnly; SameSite=Lax"))
    site.page("/probe/link", f'<!doctype html><a id="go" href="{own}/probe/target?link">go</a>')
    site.page("/probe/post", auto_post(f"{own}/probe/303", {"a": "1"}))
    site.page("/probe/303", "", ("Location", f"{own}/probe/target?after-303"), status=303)
    site.page(
        "/probe/fetch",
        '<!doctype html><script>fetch("/probe/target?fetch", {method: "POST", body: "a=1"})'
        ".then(() => { window.done = true; });</script>",
    )
    site.page(
        "/probe/form",
        '<!doctype html><form method="post" action="/probe/target?form">'
        '<button id="go" name="a" value="1">Send</button></form>',
    )

    page.goto(f"{own}/probe/set")  # a SameSite=Lax cookie on 127.0.0.1
    page.goto(f"{other}/probe/link")
    page.click("#go")
    page.wait_for_url(f"{own}/probe/target?link")
    page.goto(f"{other}/probe/post")
    page.wait_for_url(f"{own}/probe/target?after-303")
    page.goto(f"{own}/probe/fetch")
    page.wait_for_function("() => window.done")
    page.goto(f"{own}/probe/form")
    page.click("#go")
    page.wait_for_url(f"{own}/probe/target?form")

    def sent(path: str) -> dict[str, str]:
        (seen,) = site.requests(path)
        return seen

    def fetch_metadata(seen: dict[str, str]) -> tuple[str, str, str, bool]:
        return (
            seen["sec-fetch-site"],
            seen["sec-fetch-mode"],
            seen["sec-fetch-dest"],
            bool(seen["cookie"]),
        )

    cases = {
        # a link from another site: Lax cookies are sent (the first page of a sign-in)
        "/probe/target?link": (("cross-site", "navigate", "document", True), True, False),
        # another site's form POST: no cookie
        "/probe/303": (("cross-site", "navigate", "document", False), True, False),
        # ... redirected with 303: a top-level GET, the cookie is sent again
        "/probe/target?after-303": (("cross-site", "navigate", "document", True), True, False),
        # a script's fetch() on the same origin: the cookie, but no navigation
        "/probe/target?fetch": (("same-origin", "cors", "empty", True), False, False),
        # a person's form on the same origin
        "/probe/target?form": (("same-origin", "navigate", "document", True), True, True),
    }
    for path, (expected, navigation, form) in cases.items():
        seen = sent(path)
        assert fetch_metadata(seen) == expected, (path, seen)
        headers = Headers({k: v for k, v in seen.items() if k.startswith("sec-fetch-")})
        assert is_navigation(headers) is navigation, path
        assert is_navigation(headers, same_origin=True) is form, path
    assert sent("/probe/303")["method"] == "POST"
    assert sent("/probe/target?form")["sec-fetch-user"] == "?1"
