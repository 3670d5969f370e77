"""``gateway demo``'s browser client (issue 10, point 7), against the real demo process: the
printed walkthrough's URL opened in headless Chromium, signed in as the demo user, allowed,
the callback page showing the verified ID token and an API call through the gateway, and Sign
out landing back on the start page signed out (of the gateway too); then the callback's
hostile inputs over plain HTTP (missing or wrong state, another issuer, HTML in ``error``, a
code replayed)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import jwt
import pytest
import sqlalchemy as sa

from gateway.config import ServerConfig
from gateway.demo.clients import DEMO_BROWSER_CLIENT, DEMO_EMAIL, DEMO_PASSWORD
from tests.support.chromium import Browser
from tests.support.databases import fresh_database_url
from tests.support.live import (
    START_TIMEOUT,
    free_port,
    parse_page,
    query_of,
    run_cli,
    running_demo,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.live


@dataclass(frozen=True)
class Demo:
    base: str
    app_url: str
    client_id: str
    user_id: str
    config: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``gateway demo`` as ``make run`` starts it, on free ports and the suite's database."""
    directory = tmp_path_factory.mktemp("demo")
    port, upstream_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    with contextlib.contextmanager(fresh_database_url)(directory) as database_url:
        # config.example.toml's issuer, where [server] listens by default: --port moves it
        issuer = f"http://{ServerConfig.host}:{ServerConfig.port}"
        config = write_config(directory / "gateway.toml", issuer, database_url, directory / "keys")
        log = directory / "demo.log"
        with running_demo(config, port, upstream_port, log) as process:

            def printed_url() -> str:
                assert process.poll() is None, log.read_text()
                found = re.search(r"^\s+open (http://\S+)$", log.read_text(), re.M)
                return found.group(1) if found else ""

            app_url = wait_until(printed_url, "the walkthrough's URL", timeout=START_TIMEOUT)
            client_id = json.loads((directory / "keys" / DEMO_BROWSER_CLIENT).read_text())
            engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
            with engine.connect() as conn:
                user_id = conn.execute(
                    sa.text("SELECT id FROM users WHERE email = :e"), {"e": DEMO_EMAIL}
                ).scalar_one()
            engine.dispose()
            yield Demo(base, app_url, client_id["client_id"], user_id, config, log)
            assert process.poll() is None, log.read_text()


def test_walkthrough_names_the_demo_page(demo: Demo) -> None:
    assert urlsplit(demo.app_url).path == "/app/"
    assert urlsplit(demo.app_url).port != urlsplit(demo.base).port  # the upstream's origin
    assert f"sign in as\n  #    {DEMO_EMAIL} / {DEMO_PASSWORD}" in demo.output()
    # demo --port N moved the issuer (the config's was [server]'s default) along with it
    metadata = httpx.get(f"{demo.base}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == demo.base
    assert metadata["authorization_endpoint"] == f"{demo.base}/oauth/authorize"


@pytest.mark.browser
@pytest.mark.parametrize("width", [pytest.param(1280, id="desktop"), pytest.param(375, id="phone")])
def test_browser_flow_in_chromium(
    demo: Demo,
    browser: Browser,
    tmp_path: Path,
    width: int,
) -> None:
    page = browser.page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(demo.app_url)
    page.screenshot(path=tmp_path / "start.png", full_page=True)
    page.get_by_role("link", name="Sign in").click()

    page.wait_for_url(lambda url: url.startswith(f"{demo.base}/oauth/authorize?"))
    request = query_of(page.url)
    assert (request["code_challenge_method"], request["client_id"]) == ("S256", demo.client_id)
    assert request["state"] and request["nonce"] and "code_verifier" not in request
    assert set(request["scope"].split()) == {"openid", "profile", "email", "demo:read"}
    if page.get_by_label("Password").count():  # signed out of the gateway in this browser
        page.get_by_label("Email").fill(DEMO_EMAIL)
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
    # the consent page, unless an earlier Allow of this user is remembered (issue 10, point 4)
    allow = page.get_by_role("button", name="Allow", exact=True)
    allow.or_(page.locator("#id-token-claims")).first.wait_for()
    if allow.count():
        # the demo's scopes are described, the name in small print below
        assert "See the demo's orders" in page.locator("main").inner_text()
        allow.click()

    page.wait_for_url(lambda url: url.startswith(f"{demo.app_url}callback?"))
    page.locator("#id-token-claims").wait_for()
    page.screenshot(path=tmp_path / "callback.png", full_page=True)
    claims = json.loads(page.locator("#id-token-claims").inner_text())
    assert claims["sub"] == demo.user_id
    assert claims["nonce"] == request["nonce"]
    assert claims["aud"] == demo.client_id
    assert claims["email"] == DEMO_EMAIL and claims["name"] == "Demo User"
    checks = page.locator("#checks li").all_inner_texts()
    assert "nonce matched the one sent" in checks
    assert "at_hash matches the access token" in checks

    # independently: the ID token the page shows verifies against the live JWKS (PyJWT)
    id_token = page.locator("#id-token").text_content() or ""
    metadata = httpx.get(f"{demo.base}/.well-known/openid-configuration").json()
    key = jwt.PyJWKClient(metadata["jwks_uri"], cache_jwk_set=False).get_signing_key_from_jwt(
        id_token
    )
    verified = jwt.decode(
        id_token,
        key,
        algorithms=metadata["id_token_signing_alg_values_supported"],
        audience=demo.client_id,
        issuer=metadata["issuer"],
    )
    assert verified == claims

    # the API call through the gateway's proxy, with the access token
    assert page.locator("#api-status").inner_text() == "200"
    echoed = json.loads(page.locator("#api-body").inner_text())
    headers = echoed["headers"]  # what reached the upstream, lower-cased by uvicorn
    assert headers["x-forwarded-user"] == demo.user_id
    assert "demo:read" in headers["x-forwarded-scopes"].split()
    assert page.locator("#userinfo-status").inner_text() == "200"
    assert json.loads(page.locator("#userinfo-body").inner_text())["sub"] == demo.user_id

    logout = page.get_by_role("link", name="Sign out").get_attribute("href") or ""
    assert logout.startswith(f"{demo.base}/oauth/logout?")
    asked = query_of(logout)
    assert asked["id_token_hint"] == id_token
    assert asked["post_logout_redirect_uri"] == demo.app_url
    assert asked["state"]

    # the tokens never reach the browser's address bar or its cookies
    assert "access_token" not in page.url
    assert not any(id_token in c["value"] for c in page.context.cookies())
    # Sign out: RP-Initiated Logout at the gateway, straight back to the start page
    callback_url = page.url
    page.get_by_role("link", name="Sign out").click()
    page.wait_for_url(lambda url: url.startswith(f"{demo.app_url}?"))
    assert query_of(page.url)["state"] == asked["state"]
    assert "You are signed out of the gateway." in page.locator("main").inner_text()
    page.screenshot(path=tmp_path / "signed-out.png", full_page=True)
    assert browser.console_errors == []
    assert browser.outside == []
    # the same callback again: the sign-in it belonged to is over
    page.goto(callback_url)
    assert "No sign-in in progress" in page.locator("main").inner_text()
    # and the gateway's session is over: signing in again shows the login form
    page.goto(demo.app_url)
    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url(lambda url: url.startswith(f"{demo.base}/oauth/authorize?"))
    page.get_by_label("Password").wait_for()


# --- hostile callbacks, over plain HTTP -------------------------------------------------------


@contextlib.contextmanager
def user_agent() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=10.0) as agent:
        yield agent


def start(agent: httpx.Client, demo: Demo) -> dict[str, str]:
    """GET /app/login: the cookie is set in ``agent``; returns the authorization request."""
    response = agent.get(urljoin(demo.app_url, "login"))
    assert response.status_code == 302, response.text
    assert "HttpOnly" in response.headers["set-cookie"]
    return {**query_of(response.headers["location"]), "url": response.headers["location"]}


def callback(agent: httpx.Client, demo: Demo, **params: str) -> httpx.Response:
    response = agent.get(urljoin(demo.app_url, "callback"), params=params)
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; style-src 'nonce-")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in response.text.lower()
    return response


def title(response: httpx.Response) -> str:
    return " ".join(parse_page(response.text).text)


HTML = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_callback_without_a_sign_in_started(demo: Demo) -> None:
    with user_agent() as agent:
        response = callback(agent, demo, code="x", state="y", error=HTML)
    assert response.status_code == 400
    assert "No sign-in in progress" in title(response)
    assert "<img" not in response.text and "alert(" not in response.text


@pytest.mark.parametrize(
    "state", [pytest.param("", id="missing"), pytest.param("wrong", id="wrong")]
)
def test_callback_with_a_wrong_state(demo: Demo, state: str) -> None:
    with user_agent() as agent:
        request = start(agent, demo)
        params = {"code": "x", "iss": demo.base}
        if state:
            params["state"] = state
        refused = callback(agent, demo, **params)
        assert refused.status_code == 400
        assert "state does not match" in title(refused)
        # the sign-in itself is still waiting for its real callback
        denied = callback(agent, demo, state=request["state"], iss=demo.base, error="x")
        assert "The gateway refused the sign-in" in title(denied)


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        pytest.param(
            {"error": HTML, "error_description": HTML}, "The gateway refused", id="error-html"
        ),
        pytest.param({"code": "x", "iss": HTML}, "another issuer", id="iss-html"),
        pytest.param({"code": "x", "iss": None}, "another issuer", id="no-iss"),
        pytest.param({}, "carries no code", id="no-code"),
    ],
)
def test_callback_escapes_what_it_shows(
    demo: Demo, params: dict[str, str | None], shown: str
) -> None:  # fmt: skip
    with user_agent() as agent:
        request = start(agent, demo)
        query = {"state": request["state"], "iss": demo.base, **params}
        response = callback(agent, demo, **{k: v for k, v in query.items() if v is not None})
    assert response.status_code == 400
    assert shown in title(response)
    assert "<img" not in response.text and "<script>" not in response.text
    if HTML in params.values():
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def test_callback_refuses_a_repeated_parameter(demo: Demo) -> None:
    with user_agent() as agent:
        request = start(agent, demo)
        query = urlencode([("state", request["state"]), ("state", "x"), ("code", "c")])
        response = agent.get(urljoin(demo.app_url, "callback") + "?" + query)
    assert response.status_code == 400
    assert "repeated" in title(response)


def sign_in(agent: httpx.Client, authorize_url: str) -> str:
    """The user's side, as the browser test does it with forms: returns the callback URL."""
    page = agent.get(authorize_url)
    if page.status_code == 200 and "password" in parse_page(page.text).forms[0].inputs:
        form = parse_page(page.text).forms[0]
        posted = agent.post(
            urljoin(authorize_url, form.action),
            data={**form.hidden, "email": DEMO_EMAIL, "password": DEMO_PASSWORD},
        )
        assert posted.status_code == 303, posted.text
        page = agent.get(urljoin(authorize_url, posted.headers["location"]))
    if page.status_code == 200:  # the consent page
        allow = next(f for f in parse_page(page.text).forms if ("action", "allow") in f.buttons)
        page = agent.post(
            urljoin(authorize_url, allow.action), data={**allow.hidden, "action": "allow"}
        )
    assert page.status_code == 302, page.text
    return str(page.headers["location"])


def test_a_code_replayed(demo: Demo) -> None:
    with user_agent() as agent:
        request = start(agent, demo)
        back = sign_in(agent, request["url"])
        assert back.startswith(f"{demo.app_url}callback?")
        signed_in = agent.get(back)
        assert signed_in.status_code == 200, signed_in.text
        assert "nonce matched the one sent" in signed_in.text

        # the same callback again: its sign-in was used up
        again = callback(agent, demo, **query_of(back))
        assert again.status_code == 400
        assert "No sign-in in progress" in title(again)

        # a new sign-in in this browser, completed with the old code: the gateway refuses it
        fresh = start(agent, demo)
        replayed = callback(
            agent, demo, code=query_of(back)["code"], state=fresh["state"], iss=demo.base
        )
    assert replayed.status_code == 400
    assert "The token endpoint refused the code" in title(replayed)
    assert "invalid_grant" in replayed.text


def test_only_get(demo: Demo) -> None:
    response = httpx.post(urljoin(demo.app_url, "callback"), data={"code": "x"})
    assert response.status_code == 405
    assert httpx.get(urljoin(demo.app_url, "nope")).status_code == 404
    # the echo upstream still answers everything else
    assert httpx.get(urljoin(demo.app_url, "/demo/x")).json()["path"] == "/demo/x"


# --- consent revoke from another process, seen by the running demo ----------------------------


def test_consent_revoke_from_the_cli_reaches_the_running_proxy(demo: Demo) -> None:
    """``gateway consent revoke`` is a separate process: the demo learns of it through NOTIFY
    (PostgreSQL) or its revocation poll (``sync_interval`` 0.2 s here), never by restarting."""
    creds = json.loads((demo.config.parent / "keys" / "demo-client.json").read_text())
    auth = (creds["client_id"], creds["client_secret"])
    issued = httpx.post(
        f"{demo.base}/oauth/token",
        auth=auth,
        data={
            "grant_type": "password",
            "username": DEMO_EMAIL,
            "password": DEMO_PASSWORD,
            "scope": "demo:read",
        },
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(f"{demo.base}/demo/orders/7", headers=bearer).status_code == 200

    out = run_cli(
        demo.config, "consent", "revoke", "--user", DEMO_EMAIL, f"--client={creds['client_id']}"
    )
    assert "1 grant(s) ended" in out

    wait_until(
        lambda: httpx.get(f"{demo.base}/demo/orders/7", headers=bearer).status_code == 401,
        "the proxy to refuse the revoked access token",
    )
    refreshed = httpx.post(
        f"{demo.base}/oauth/token",
        auth=auth,
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
