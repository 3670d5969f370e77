"""The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636, S256 only per RFC 9700
§2.1.1), the issuer parameter (RFC 9207), and the login and consent pages that drive it."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from gateway.issuer.grants import AuthorizationCodeGrant
from gateway.models import AuthorizationCode
from tests.support.app import ISSUER, PASSWORD, make_client, make_user, with_tokens
from tests.support.issuer import (
    REDIRECT_URI,
    authorize_url,
    consent,
    csrf_token,
    decode,
    get_code,
    is_active,
    login,
    oauth_error,
    pkce_pair,
    redeem,
    redirect_params,
    refresh,
    running,
    tokens,
)

# --- the pages, step by step (RFC 6749 §4.1.1-§4.1.2) ------------------------------------------


def test_login_consent_and_redirect(client, user, confidential):
    url = authorize_url(confidential, scope="orders:read profile", state="s-123")

    page = client.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'type="hidden" name="csrf_token"' in page.text
    assert 'name="password"' in page.text
    assert "Test app" in page.text

    posted = login(client, url, user.email)
    assert posted.status_code == 303
    assert posted.headers["location"] == url  # post/redirect/get to the same request

    page = client.get(url)
    assert page.status_code == 200
    assert "Authorize Test app" in page.text
    assert 'data-scope="orders:read"' in page.text and 'data-scope="profile"' in page.text
    assert "See your name and e-mail address" in page.text  # profile: /oauth/me answers both
    assert "orders:write" not in page.text
    assert user.email in page.text

    response = client.post(url, data={"action": "allow", "csrf_token": csrf_token(page)})
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    params = redirect_params(response)
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == "s-123"
    assert params["iss"] == ISSUER

    issued = tokens(redeem(client, confidential, params["code"]))
    assert issued["scope"] == "orders:read profile"
    assert issued["token_type"] == "Bearer"
    assert issued["refresh_token"]
    claims = decode(client, issued["access_token"])
    assert claims["sub"] == user.id
    assert claims["email"] == user.email
    assert claims["client_id"] == confidential.client_id
    assert abs(claims["auth_time"] - time.time()) < 60


def test_deny_redirects_with_access_denied(client, user, confidential):
    url = authorize_url(confidential, state="st")
    login(client, url, user.email)
    response = consent(client, url, action="deny")
    params = redirect_params(response)
    assert params["error"] == "access_denied"
    assert (params["state"], params["iss"]) == ("st", ISSUER)
    assert "code" not in params


def test_wrong_password_shows_the_form_again_without_signing_in(client, user, confidential):
    url = authorize_url(confidential)
    response = login(client, url, user.email, password="not the password")
    assert response.status_code == 401
    assert "The email or password is not correct." in response.text
    assert 'name="password"' in client.get(url).text  # still signed out


def test_unknown_user_gets_the_same_message(client, user, confidential):
    url = authorize_url(confidential)
    response = login(client, url, "nobody@example.com")
    assert response.status_code == 401
    assert "The email or password is not correct." in response.text


def test_allow_without_a_session_asks_to_sign_in(client, user, confidential):
    url = authorize_url(confidential)
    page = client.get(url)
    response = client.post(url, data={"action": "allow", "csrf_token": csrf_token(page)})
    assert response.status_code == 303
    assert "code=" not in response.headers["location"]


def test_logout_signs_out(client, user, confidential):
    url = authorize_url(confidential)
    login(client, url, user.email)
    page = client.get(url)
    response = client.post(url, data={"action": "logout", "csrf_token": csrf_token(page)})
    assert response.status_code == 303
    assert 'name="password"' in client.get(url).text


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"client_id": "no-such-client"}, id="unknown-client"),
        pytest.param({"client_id": None}, id="missing-client"),
        pytest.param({"client_id": "x" * 5000}, id="huge-client-id"),
        pytest.param({"redirect_uri": "https://evil.example.com/cb"}, id="unregistered-redirect"),
    ],
)
def test_bad_client_or_redirect_uri_shows_an_error_page(client, confidential, params):
    """RFC 6749 §4.1.2.1: never redirect to an unverified redirect URI."""
    page = client.get(authorize_url(confidential, **params))
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "location" not in page.headers
    assert "cannot be completed" in page.text


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit"),
        pytest.param({"response_type": None}, "unsupported_response_type", id="no-response-type"),
        pytest.param({"scope": "admin"}, "invalid_scope", id="unknown-scope"),
    ],
)
def test_other_errors_go_back_to_the_client_with_state_and_iss(client, confidential, params, error):
    params_back = redirect_params(client.get(authorize_url(confidential, **params)))
    assert params_back["error"] == error
    assert params_back["state"] == "xyz"
    assert params_back["iss"] == ISSUER


@pytest.mark.parametrize(
    "repeated",
    [
        pytest.param("client_id", id="client_id"),
        pytest.param("redirect_uri", id="redirect_uri"),
        pytest.param("state", id="state"),
        pytest.param("scope", id="scope"),
        pytest.param("response_type", id="response_type"),
        pytest.param("code_challenge", id="code_challenge"),
    ],
)
def test_repeated_parameters_are_refused(client, confidential, repeated):
    """RFC 6749 §3.1: parameters MUST NOT be included more than once."""
    _, challenge = pkce_pair()
    params = {
        "client_id": confidential.client_id,
        "redirect_uri": REDIRECT_URI,
        "state": "xyz",
        "scope": "orders:read",
        "response_type": "code",
        "code_challenge": challenge,
    }
    url = authorize_url(confidential, **params, code_challenge_method="S256")
    value = params[repeated]
    page = client.get(f"{url}&{repeated}={value}")
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "A parameter is repeated." in page.text


# --- PKCE (RFC 7636, RFC 9700 §2.1.1) -----------------------------------------------------------


def test_public_client_with_s256(client, user, public):
    verifier, challenge = pkce_pair()
    code = get_code(client, public, user, challenge=challenge)
    issued = tokens(redeem(client, public, code, verifier))
    assert decode(client, issued["access_token"])["client_id"] == public.client_id


def test_confidential_client_with_s256(client, user, confidential):
    verifier, challenge = pkce_pair()
    code = get_code(client, confidential, user, challenge=challenge)
    tokens(redeem(client, confidential, code, verifier))


@pytest.mark.parametrize(
    ("registered", "params"),
    [
        pytest.param(
            "public",
            {"code_challenge": pkce_pair()[0], "code_challenge_method": "plain"},
            id="plain",
        ),
        pytest.param("public", {"code_challenge": pkce_pair()[1]}, id="method-missing"),
        pytest.param(
            "public",
            {"code_challenge": pkce_pair()[1], "code_challenge_method": "s256"},
            id="method-lowercase",
        ),
        pytest.param("public", {}, id="public-without-challenge"),
        pytest.param(
            "public", {"code_challenge_method": "S256"}, id="public-method-without-challenge"
        ),
        pytest.param(
            "public",
            {"code_challenge": "short", "code_challenge_method": "S256"},
            id="malformed-challenge",
        ),
        pytest.param(
            "confidential",
            {"code_challenge": pkce_pair()[0], "code_challenge_method": "plain"},
            id="confidential-plain",
        ),
        pytest.param(
            "confidential", {"code_challenge": pkce_pair()[1]}, id="confidential-method-missing"
        ),
    ],
)
def test_pkce_requests_refused(client, request, registered, params):
    app = request.getfixturevalue(registered)
    response = client.get(authorize_url(app, **params))
    back = redirect_params(response)
    assert back["error"] == "invalid_request", back
    assert back["state"] == "xyz"
    assert back["iss"] == ISSUER


def test_wrong_verifier_is_invalid_grant(client, user, public):
    _, challenge = pkce_pair()
    code = get_code(client, public, user, challenge=challenge)
    oauth_error(redeem(client, public, code, pkce_pair()[0]), 400, "invalid_grant")


def test_missing_verifier_is_refused(client, user, public):
    _, challenge = pkce_pair()
    code = get_code(client, public, user, challenge=challenge)
    oauth_error(redeem(client, public, code), 400, "invalid_request")


def test_confidential_missing_verifier_is_refused(client, user, confidential):
    _, challenge = pkce_pair()
    code = get_code(client, confidential, user, challenge=challenge)
    oauth_error(redeem(client, confidential, code), 400, "invalid_request")


def test_verifier_without_challenge_is_refused(client, user, confidential):
    """RFC 9700 §4.8.2: a code_verifier for a code issued without a challenge is refused
    (PKCE downgrade)."""
    code = get_code(client, confidential, user)
    oauth_error(redeem(client, confidential, code, pkce_pair()[0]), 400, "invalid_request")


# --- the code: single use, short-lived, bound (RFC 6749 §4.1.2, §4.1.3, §10.5) ----------------


def test_code_is_stored_hashed(client, storage, user, confidential):
    code = get_code(client, confidential, user)
    with storage.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM authorization_codes")).all()
    assert len(rows) == 1
    assert not any(code in str(v) for v in rows[0])


def test_replayed_code_fails_and_revokes_what_it_gave(client, user, confidential, resource_server):
    code = get_code(client, confidential, user)
    first = tokens(redeem(client, confidential, code))
    assert is_active(client, resource_server, first["access_token"])

    oauth_error(redeem(client, confidential, code), 400, "invalid_grant")

    assert not is_active(client, resource_server, first["access_token"])
    assert not is_active(client, resource_server, first["refresh_token"])
    oauth_error(refresh(client, confidential, first["refresh_token"]), 400, "invalid_grant")


def test_the_loser_of_a_redemption_race_revokes_what_the_code_gave(
    client, storage, user, confidential, resource_server, monkeypatch
):
    """The second redemption reads the code as still unused, as the loser of a race does (it
    read the row before the winner committed): its transaction's conditional update decides,
    and it is the replay it is."""
    code = get_code(client, confidential, user)
    first = tokens(redeem(client, confidential, code))
    query = AuthorizationCodeGrant.query_authorization_code

    def read_before_the_first_redemption(grant, code, registered):
        with storage.session() as session:
            row = session.scalars(sa.select(AuthorizationCode)).one()
            used_at, row.used_at = row.used_at, None
        try:
            return query(grant, code, registered)
        finally:
            with storage.session() as session:
                session.scalars(sa.select(AuthorizationCode)).one().used_at = used_at

    monkeypatch.setattr(
        AuthorizationCodeGrant, "query_authorization_code", read_before_the_first_redemption
    )
    oauth_error(redeem(client, confidential, code), 400, "invalid_grant")

    assert not is_active(client, resource_server, first["access_token"])
    assert not is_active(client, resource_server, first["refresh_token"])


def test_code_expires_after_its_ttl(config, storage, user, confidential):
    with running(with_tokens(config, authorization_code_ttl=7)) as client:
        before = time.time()
        code = get_code(client, confidential, user)
        with storage.session() as session:
            row = session.scalars(sa.select(AuthorizationCode)).one()
            assert before + 7 <= row.expires_at <= time.time() + 7
            row.expires_at = time.time() - 1  # as if 7 seconds had passed
        oauth_error(redeem(client, confidential, code), 400, "invalid_grant")


def test_code_is_bound_to_its_client(client, storage, user, confidential):
    code = get_code(client, confidential, user)
    other = make_client(storage, name="Other app")
    oauth_error(redeem(client, other, code), 400, "invalid_grant")
    tokens(redeem(client, confidential, code))  # the attempt did not burn it


@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param("http://127.0.0.1:9999/other", id="other"),
        pytest.param("http://127.0.0.1:9998/callback", id="other-port"),
        pytest.param(None, id="missing"),
    ],
)
def test_code_is_bound_to_its_redirect_uri(client, user, confidential, redirect_uri):
    code = get_code(client, confidential, user)
    oauth_error(redeem(client, confidential, code, redirect_uri=redirect_uri), 400, "invalid_grant")


def test_code_is_bound_to_its_challenge(client, user, public):
    _, challenge_a = pkce_pair()
    verifier_b, challenge_b = pkce_pair()
    code_a = get_code(client, public, user, challenge=challenge_a)
    code_b = get_code(client, public, user, challenge=challenge_b)
    oauth_error(redeem(client, public, code_a, verifier_b), 400, "invalid_grant")
    tokens(redeem(client, public, code_b, verifier_b))


def test_code_is_bound_to_its_user(client, storage, user, confidential):
    bob = make_user(storage, "bob@example.com")
    code_alice = get_code(client, confidential, user)
    client.cookies.clear()
    code_bob = get_code(client, confidential, bob)
    alice = decode(client, tokens(redeem(client, confidential, code_alice))["access_token"])
    bob_claims = decode(client, tokens(redeem(client, confidential, code_bob))["access_token"])
    assert (alice["sub"], alice["email"]) == (user.id, user.email)
    assert (bob_claims["sub"], bob_claims["email"]) == (bob.id, "bob@example.com")


def test_unknown_code_is_invalid_grant(client, confidential):
    oauth_error(redeem(client, confidential, "made-up-code"), 400, "invalid_grant")


# --- page security -------------------------------------------------------------------------------

PAGE_STEPS = ["login-form", "login-post", "consent", "error", "login-failed", "redirect"]


@pytest.mark.parametrize("step", PAGE_STEPS)
def test_every_page_has_security_headers(client, user, confidential, step):
    url = authorize_url(confidential)
    if step == "login-form":
        response = client.get(url)
    elif step == "login-post":
        response = login(client, url, user.email)
    elif step == "login-failed":
        response = login(client, url, user.email, password="wrong password")
    elif step == "consent":
        login(client, url, user.email)
        response = client.get(url)
    elif step == "error":
        response = client.get(authorize_url(confidential, client_id="nope"))
    else:
        login(client, url, user.email)
        response = consent(client, url)
    assert response.headers["cache-control"] == "no-store"
    if response.status_code in (200, 400, 401):
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_session_cookie_attributes(client, user, confidential):
    url = authorize_url(confidential)
    response = login(client, url, user.email)
    cookie = response.headers["set-cookie"]
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes  # http issuer in tests; https adds it


def test_tampered_session_cookie_is_ignored(client, user, confidential):
    url = authorize_url(confidential)
    login(client, url, user.email)
    cookie = client.cookies["gateway_session"]
    data, tag = cookie.split(".")
    for forged in (f"{data}.{tag[:-2]}AA", f"{data[:-2]}AA.{tag}", data, "garbage", "a.b"):
        client.cookies.clear()
        client.cookies.set("gateway_session", forged, path="/oauth")
        page = client.get(url)
        assert page.status_code == 200
        assert 'name="password"' in page.text, forged  # signed out again


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("wrong", id="wrong"),
        pytest.param("stale", id="from-before-login"),
    ],
)
def test_csrf_token_required_on_login(client, user, confidential, token):
    url = authorize_url(confidential)
    page = client.get(url)
    form = {"action": "login", "email": user.email, "password": PASSWORD}
    if token is not None:
        form["csrf_token"] = token
    if token == "stale":
        form["csrf_token"] = csrf_token(page)
        client.cookies.clear()  # another browser: a fresh session, no matching token
        client.get(url)
    response = client.post(url, data=form)
    assert response.status_code == 400
    assert "cannot be completed" in response.text
    assert 'name="password"' in client.get(url).text  # not signed in


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="missing"),
        pytest.param("wrong", id="wrong"),
        pytest.param("login-page-token", id="pre-login-token"),
    ],
)
def test_csrf_token_required_on_consent(client, user, confidential, token):
    url = authorize_url(confidential)
    login_page = client.get(url)
    old_token = csrf_token(login_page)
    posted = client.post(
        url,
        data={
            "action": "login",
            "email": user.email,
            "password": PASSWORD,
            "csrf_token": old_token,
        },
    )
    assert posted.status_code == 303
    form = {"action": "allow"}
    if token == "wrong":
        form["csrf_token"] = "wrong"
    elif token == "login-page-token":
        form["csrf_token"] = old_token  # login rotates the session, and its CSRF token
    response = client.post(url, data=form)
    assert response.status_code == 400
    assert "location" not in response.headers


def test_page_renders_client_name_escaped(client, storage, user):
    app = make_client(storage, name="<script>alert(1)</script>")
    page = client.get(authorize_url(app))
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text
