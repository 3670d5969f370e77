"""RP-Initiated Logout 1.0 at ``/oauth/logout``: the ``id_token_hint`` (ours only, expired is
fine), ``post_logout_redirect_uri`` (exact match only), ``state``, the confirmation page, the
session ended for good (a replayed cookie is signed out on every replica), the cookie cleared,
and ``sessions.logout_revokes_tokens``."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.issuer.session import COOKIE
from gateway.keys import KeyRing
from tests.support.app import ISSUER
from tests.support.issuer import (
    authorize_url,
    csrf_token,
    introspect,
    redirect_params,
    refresh,
    running,
)
from tests.support.oidc import (
    LOGGED_OUT,
    cookie_session,
    is_consent_page,
    is_login_form,
    relying_party,
    session_row,
    sign_in_with_tokens,
    signed_in,
    with_sessions,
)

LOGOUT = "/oauth/logout"
DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def rp(storage):
    return relying_party(storage, "Orders web")


def logout_url(**params: str) -> str:
    return LOGOUT + ("?" + urlencode(params) if params else "")


def assert_cookie_cleared(response) -> None:
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=;")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert "max-age=0" in attributes
    assert "path=/oauth" in attributes


def assert_page_headers(response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "style-src 'nonce-" in csp


def is_confirmation(response) -> bool:
    return response.status_code == 200 and 'value="logout"' in response.text


# --- with a valid hint and a registered URI: at once -------------------------------------------


def test_hint_and_registered_uri_end_the_session_and_redirect(client, config, storage, user, rp):
    issued = sign_in_with_tokens(client, rp, user)
    old_cookie = client.cookies[COOKIE]
    sid = cookie_session(client, config).sid

    response = client.get(
        logout_url(
            id_token_hint=issued["id_token"], post_logout_redirect_uri=LOGGED_OUT, state="bye 1"
        )
    )
    assert response.status_code == 302
    assert response.headers["location"] == LOGGED_OUT + "?state=bye+1"
    assert_cookie_cleared(response)
    assert response.headers["cache-control"] == "no-store"
    assert session_row(storage, sid).ended_at is not None

    # the old cookie, replayed, is signed out: on this replica and on another
    with running(config) as replica:
        for app in (client, replica):
            app.cookies.clear()
            app.cookies.set(COOKIE, old_cookie, path="/oauth")
            assert is_login_form(app.get(authorize_url(rp)))
            back = redirect_params(app.get(authorize_url(rp, prompt="none")))
            assert back["error"] == "login_required"


def test_without_state_the_uri_is_used_as_registered(client, storage, user):
    rp = relying_party(storage, post_logout_redirect_uris=("http://127.0.0.1:9999/bye?from=gw",))
    issued = sign_in_with_tokens(client, rp, user)
    response = client.get(
        logout_url(
            id_token_hint=issued["id_token"],
            post_logout_redirect_uri="http://127.0.0.1:9999/bye?from=gw",
        )
    )
    assert response.headers["location"] == "http://127.0.0.1:9999/bye?from=gw"


def test_an_expired_hint_is_fine(client, config, user, rp):
    sign_in_with_tokens(client, rp, user)
    session = cookie_session(client, config)
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": user.id, "aud": rp.client_id, "iat": now - 7200}
    claims |= {"exp": now - 3600, "sid": session.sid, "auth_time": now - 7200}
    expired = KeyRing(Path(config.keys_dir)).sign(claims, typ="JWT")
    response = client.get(
        logout_url(id_token_hint=expired, post_logout_redirect_uri=LOGGED_OUT, state="s")
    )
    assert response.status_code == 302
    assert response.headers["location"] == LOGGED_OUT + "?state=s"


def test_hint_without_a_uri_shows_the_signed_out_page(client, config, storage, user, rp):
    issued = sign_in_with_tokens(client, rp, user)
    sid = cookie_session(client, config).sid
    response = client.get(logout_url(id_token_hint=issued["id_token"]))
    assert response.status_code == 200
    assert "You are signed out" in response.text
    assert_cookie_cleared(response)
    assert_page_headers(response)
    assert session_row(storage, sid).ended_at is not None


def test_a_post_from_the_rp_without_the_cookie_ends_the_hinted_session(
    client, config, storage, user, rp
):
    """A cross-site form POST carries no SameSite=Lax cookie: the hint's ``sid`` names the
    session to end."""
    issued = sign_in_with_tokens(client, rp, user)
    sid = cookie_session(client, config).sid
    client.cookies.clear()
    response = client.post(
        LOGOUT,
        data={"id_token_hint": issued["id_token"], "post_logout_redirect_uri": LOGGED_OUT},
    )
    assert response.status_code == 302
    assert response.headers["location"] == LOGGED_OUT
    assert session_row(storage, sid).ended_at is not None


def test_a_hint_of_an_older_session_asks_first(client, config, storage, user, rp):
    issued = sign_in_with_tokens(client, rp, user)
    old_sid = cookie_session(client, config).sid
    signed_in(client, rp, user.email, prompt="login")  # a newer login in this browser
    new_sid = cookie_session(client, config).sid
    response = client.get(
        logout_url(id_token_hint=issued["id_token"], post_logout_redirect_uri=LOGGED_OUT)
    )
    assert is_confirmation(response)
    assert session_row(storage, new_sid).ended_at is None
    assert session_row(storage, old_sid).ended_at is not None  # ended by the newer login


# --- without a valid hint: the confirmation page -----------------------------------------------


def test_no_hint_asks_then_ends_on_the_post(client, config, storage, user, rp):
    sign_in_with_tokens(client, rp, user)
    sid = cookie_session(client, config).sid
    page = client.get(
        logout_url(client_id=rp.client_id, post_logout_redirect_uri=LOGGED_OUT, state="st")
    )
    assert is_confirmation(page)
    assert "Orders web" in page.text
    assert_page_headers(page)
    assert session_row(storage, sid).ended_at is None  # not before the confirmation
    assert is_consent_page(client.get(authorize_url(rp, prompt="consent")))

    form = {
        "csrf_token": csrf_token(page),
        "action": "logout",
        "client_id": rp.client_id,
        "post_logout_redirect_uri": LOGGED_OUT,
        "state": "st",
    }
    assert f'name="post_logout_redirect_uri" value="{LOGGED_OUT}"' in page.text
    response = client.post(LOGOUT, data=form)
    assert response.status_code == 302
    assert response.headers["location"] == LOGGED_OUT + "?state=st"
    assert_cookie_cleared(response)
    assert session_row(storage, sid).ended_at is not None


def test_no_hint_no_uri_ends_on_the_post_with_the_signed_out_page(
    client, config, storage, user, rp
):
    sign_in_with_tokens(client, rp, user)
    sid = cookie_session(client, config).sid
    page = client.get(LOGOUT)
    assert is_confirmation(page)
    response = client.post(LOGOUT, data={"csrf_token": csrf_token(page), "action": "logout"})
    assert response.status_code == 200
    assert "You are signed out" in response.text
    assert_cookie_cleared(response)
    assert session_row(storage, sid).ended_at is not None
    assert is_login_form(client.get(authorize_url(rp)))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("wrong", id="wrong"),
        pytest.param("other-browser", id="other-browser"),
    ],
)
def test_the_confirmation_needs_its_csrf_token(client, config, storage, user, rp, token):
    sign_in_with_tokens(client, rp, user)
    sid = cookie_session(client, config).sid
    form = {"action": "logout", "client_id": rp.client_id, "post_logout_redirect_uri": LOGGED_OUT}
    if token == "other-browser":
        with running(config) as other:
            form["csrf_token"] = csrf_token(other.get(LOGOUT))
    elif token is not None:
        form["csrf_token"] = token
    response = client.post(LOGOUT, data=form)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert session_row(storage, sid).ended_at is None
    assert is_consent_page(client.get(authorize_url(rp, prompt="consent")))


def foreign_key_token(claims: dict, kid: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


@pytest.mark.parametrize(
    "hint",
    ["other-issuer", "foreign-key", "access-token", "garbage", "overlong", "alg-none", "no-sid"],
)
def test_an_invalid_hint_is_no_hint(client, config, storage, user, rp, hint):
    issued = sign_in_with_tokens(client, rp, user)
    session = cookie_session(client, config)
    keyring = KeyRing(Path(config.keys_dir))
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": user.id, "aud": rp.client_id, "iat": now, "exp": now + 60}
    claims["sid"] = session.sid
    if hint == "other-issuer":
        token = keyring.sign({**claims, "iss": "https://other.example"}, typ="JWT")
    elif hint == "foreign-key":
        token = foreign_key_token(claims, keyring.active_key.kid)
    elif hint == "access-token":
        token = issued["access_token"]
    elif hint == "garbage":
        token = "not.a.token"
    elif hint == "overlong":
        token = keyring.sign({**claims, "pad": "x" * 9000}, typ="JWT")
    elif hint == "alg-none":
        token = jwt.encode(claims, None, algorithm="none", headers={"kid": keyring.active_key.kid})
    else:
        token = keyring.sign({k: v for k, v in claims.items() if k != "sid"}, typ="JWT")
    # no client to check a URI against: refused, never redirected
    response = client.get(logout_url(id_token_hint=token, post_logout_redirect_uri=LOGGED_OUT))
    assert response.status_code == 400
    assert "location" not in response.headers
    # with the client named: the confirmation page, nothing ended yet
    response = client.get(
        logout_url(id_token_hint=token, client_id=rp.client_id, post_logout_redirect_uri=LOGGED_OUT)
    )
    assert is_confirmation(response)
    assert "location" not in response.headers
    assert session_row(storage, session.sid).ended_at is None


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("http://127.0.0.1:9999/logged", id="prefix"),
        pytest.param("http://127.0.0.1:9999/logged-out/more", id="suffix"),
        pytest.param("http://127.0.0.1:9999/Logged-Out", id="case"),
        pytest.param("HTTP://127.0.0.1:9999/logged-out", id="scheme-case"),
        pytest.param("http://x@127.0.0.1:9999/logged-out", id="userinfo"),
        pytest.param("http://127.0.0.1:9998/logged-out", id="other-port"),
        pytest.param("http://127.0.0.1/logged-out", id="no-port"),
        pytest.param("http://127.0.0.1:9999/logged-out/", id="trailing-slash"),
        pytest.param("http://127.0.0.1:9999/logged-out?next=1", id="query-added"),
        pytest.param("http://127.0.0.1:9999/logged-out#frag", id="fragment"),
        pytest.param("http://127.0.0.1:9999/logged%2Dout", id="percent-encoded"),
        pytest.param("http://127.0.0.1:9999/callback", id="the-redirect-uri"),
        pytest.param("https://evil.example/logged-out", id="other-host"),
        pytest.param("http://127.0.0.1:9999/logged-out" + "x" * 5000, id="overlong"),
    ],
)
def test_an_unregistered_uri_is_refused(client, config, storage, user, rp, uri):
    issued = sign_in_with_tokens(client, rp, user)
    sid = cookie_session(client, config).sid
    for params in (
        {"id_token_hint": issued["id_token"]},
        {"client_id": rp.client_id},
    ):
        response = client.get(logout_url(**params, post_logout_redirect_uri=uri, state="s"))
        assert response.status_code == 400, response.text
        assert "location" not in response.headers
        assert "cannot be completed" in response.text
        assert_page_headers(response)
    assert session_row(storage, sid).ended_at is None


def test_client_id_must_be_the_hints_audience(client, storage, user, rp):
    issued = sign_in_with_tokens(client, rp, user)
    other = relying_party(storage, "Other web")
    response = client.get(
        logout_url(
            id_token_hint=issued["id_token"],
            client_id=other.client_id,
            post_logout_redirect_uri=LOGGED_OUT,
        )
    )
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("state=a&state=b", id="repeated"),
        pytest.param("client_id=" + "x" * 5000 + "&post_logout_redirect_uri=x", id="huge-client"),
        pytest.param("client_id=%00&post_logout_redirect_uri=x", id="nul-client"),
        pytest.param("state=%C3%A9", id="non-ascii-state"),
        pytest.param("id_token_hint=%FF%FE", id="bad-utf8-hint"),
    ],
)
def test_hostile_queries_are_never_a_500(client, query):
    response = client.get(f"{LOGOUT}?{query}")
    assert response.status_code in (200, 400), response.text
    assert "location" not in response.headers


def test_a_post_that_is_not_a_form_is_refused(client):
    response = client.post(LOGOUT, content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 400


# --- logout_revokes_tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("revokes", [True, False])
def test_logout_revokes_the_sessions_grants_when_configured(
    config, storage, user, rp, resource_server, revokes
):
    with running(with_sessions(config, logout_revokes_tokens=revokes)) as client:
        issued = sign_in_with_tokens(client, rp, user)
        elsewhere = relying_party(storage, "Kept web")
        client.cookies.clear()
        kept = sign_in_with_tokens(client, elsewhere, user)  # another browser session
        client.cookies.clear()
        sign_in_with_tokens(client, rp, user)  # a third, which logs out below
        client.cookies.clear()
        # the first session logs out (its cookie is gone: a hint names it)
        response = client.get(
            logout_url(id_token_hint=issued["id_token"], post_logout_redirect_uri=LOGGED_OUT)
        )
        assert response.status_code == 302
        userinfo = client.get(
            "/oauth/userinfo", headers={"Authorization": f"Bearer {issued['access_token']}"}
        )
        active = introspect(client, resource_server, issued["access_token"])["active"]
        refreshed = refresh(client, rp, issued["refresh_token"])
        if revokes:
            assert active is False
            assert introspect(client, resource_server, issued["refresh_token"]) == {"active": False}
            assert userinfo.status_code == 401  # the in-memory sets have it too
            assert refreshed.status_code == 400
        else:
            assert active is True
            assert userinfo.status_code == 200
            assert refreshed.status_code == 200
        # another session's grants are not touched either way
        assert introspect(client, resource_server, kept["access_token"])["active"] is True


@pytest.mark.parametrize("revokes", [True, False])
def test_not_you_on_the_consent_page_ends_the_session_like_logout(
    config, storage, user, rp, resource_server, revokes
):
    """The consent page's "Not you?" signs out as logout does: the session ends everywhere,
    and with ``logout_revokes_tokens`` its grants are revoked too."""
    with running(with_sessions(config, logout_revokes_tokens=revokes)) as client:
        issued = sign_in_with_tokens(client, rp, user)
        sid = cookie_session(client, config).sid
        url = authorize_url(rp, prompt="consent")
        page = client.get(url)
        assert is_consent_page(page)
        response = client.post(url, data={"action": "logout", "csrf_token": csrf_token(page)})
        assert response.status_code == 303
        assert session_row(storage, sid).ended_at is not None
        assert is_login_form(client.get(url))
        active = introspect(client, resource_server, issued["access_token"])["active"]
        assert active is not revokes


def test_discovery_names_the_endpoint(client):
    body = client.get(DISCOVERY).json()
    assert body["end_session_endpoint"] == f"{ISSUER}/oauth/logout"
    assert body["prompt_values_supported"] == ["none", "login", "consent"]
    assert (
        "end_session_endpoint" not in client.get("/.well-known/oauth-authorization-server").json()
    )
