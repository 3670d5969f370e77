"""Single sign-on (OpenID Connect Core §3.1.2.3: the OP's session) on the server-side browser
session, bounded by ``sessions.lifetime`` and ``sessions.idle_timeout``, and the
authorization request's ``prompt`` and ``max_age`` (§3.1.2.1)."""

from __future__ import annotations

import dataclasses
import time

import pytest
import sqlalchemy as sa

from gateway.issuer.session import TOUCH_INTERVAL
from gateway.models import BrowserSession
from tests.support.app import ISSUER
from tests.support.issuer import (
    authorize_url,
    csrf_token,
    get_code,
    login,
    redirect_params,
    running,
)
from tests.support.oidc import (
    allow,
    cookie_session,
    id_token_claims,
    is_consent_page,
    is_login_form,
    relying_party,
    session_row,
    set_cookie_session,
    signed_in,
    update_row,
    with_sessions,
)


@pytest.fixture
def rp(storage):
    return relying_party(storage, "Orders web")


@pytest.fixture
def rp2(storage):
    return relying_party(storage, "Billing web")


# --- the session: made at login, checked at every use ---------------------------------------


def test_login_creates_the_session_row(client, config, storage, user, rp):
    before = time.time()
    signed_in(client, rp, user.email)
    session = cookie_session(client, config)
    row = session_row(storage, session.sid)
    assert row is not None
    assert row.user_id == user.id
    assert row.ended_at is None
    assert before <= row.auth_time <= time.time()
    assert row.expires_at == pytest.approx(row.auth_time + config.sessions.lifetime)
    assert row.last_seen_at == pytest.approx(row.auth_time)


def test_a_second_login_ends_the_first_session(client, config, storage, user, rp):
    signed_in(client, rp, user.email)
    first = cookie_session(client, config).sid
    signed_in(client, rp, user.email, prompt="login")
    second = cookie_session(client, config).sid
    assert second != first
    assert session_row(storage, first).ended_at is not None
    assert session_row(storage, second).ended_at is None


def test_a_second_client_skips_the_login_form(client, user, rp, rp2):
    signed_in(client, rp, user.email)
    assert is_consent_page(client.get(authorize_url(rp)))
    page = client.get(authorize_url(rp2))
    assert is_consent_page(page), page.text
    assert "Billing web" in page.text


def test_id_token_after_sso_keeps_auth_time_and_sid(client, config, user, rp, rp2):
    url = signed_in(client, rp, user.email, scope="openid")
    first = id_token_claims(client, rp, allow(client, url)["code"])
    second = id_token_claims(client, rp2, get_code(client, rp2, user, scope="openid"))
    assert second["sid"] == first["sid"] == cookie_session(client, config).sid
    assert second["auth_time"] == first["auth_time"]
    assert second["aud"] == rp2.client_id


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("idle", id="idle-timeout"),
        pytest.param("lifetime", id="lifetime"),
        pytest.param("ended", id="ended"),
        pytest.param("deleted", id="row-gone"),
    ],
)
def test_a_session_past_its_bounds_is_signed_out(client, config, storage, user, rp, change):
    url = signed_in(client, rp, user.email)
    sid = cookie_session(client, config).sid
    assert is_consent_page(client.get(url))
    now = time.time()
    if change == "idle":
        update_row(storage, sid, last_seen_at=now - config.sessions.idle_timeout - 1)
    elif change == "lifetime":
        update_row(storage, sid, expires_at=now - 1)
    elif change == "ended":
        update_row(storage, sid, ended_at=now)
    else:
        with storage.session() as db:
            db.execute(sa.delete(BrowserSession).where(BrowserSession.id == sid))
    assert is_login_form(client.get(url))
    # a form of the signed-in page posted now leads to the login form, never to a code
    response = client.post(url, data={"action": "allow", "csrf_token": csrf_token(client.get(url))})
    assert response.status_code == 303
    assert is_login_form(client.get(url))


def test_just_inside_the_idle_timeout_still_counts(client, config, storage, user, rp):
    url = signed_in(client, rp, user.email)
    sid = cookie_session(client, config).sid
    update_row(storage, sid, last_seen_at=time.time() - config.sessions.idle_timeout + 30)
    assert is_consent_page(client.get(url))


def test_use_is_recorded_at_most_once_a_minute(client, config, storage, user, rp):
    url = signed_in(client, rp, user.email)
    sid = cookie_session(client, config).sid
    recent = time.time() - TOUCH_INTERVAL / 2
    update_row(storage, sid, last_seen_at=recent)
    client.get(url)
    assert session_row(storage, sid).last_seen_at == recent  # no write
    update_row(storage, sid, last_seen_at=time.time() - TOUCH_INTERVAL - 5)
    client.get(url)
    assert session_row(storage, sid).last_seen_at == pytest.approx(time.time(), abs=5)


def test_the_idle_timeout_is_configurable(config, storage, user, rp):
    with running(with_sessions(config, idle_timeout=40.0)) as client:
        url = signed_in(client, rp, user.email)
        sid = cookie_session(client, config).sid
        # used 30 s ago: still in, and the use is recorded (a short timeout records sooner)
        update_row(storage, sid, last_seen_at=time.time() - 30)
        assert is_consent_page(client.get(url))
        assert session_row(storage, sid).last_seen_at == pytest.approx(time.time(), abs=5)
        update_row(storage, sid, last_seen_at=time.time() - 41)
        assert is_login_form(client.get(url))


def test_the_cookie_max_age_follows_the_lifetime(config, storage, user, rp):
    with running(with_sessions(config, lifetime=1234.0)) as client:
        response = login(client, authorize_url(rp), user.email)
        assert "Max-Age=1234" in response.headers["set-cookie"]
        row = session_row(storage, cookie_session(client, config).sid)
        assert row.expires_at == pytest.approx(row.auth_time + 1234)


# --- prompt and max_age (§3.1.2.1) -----------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"prompt": "none login"}, id="none-login"),
        pytest.param({"prompt": "none consent"}, id="none-consent"),
        pytest.param({"prompt": "login none"}, id="login-none"),
        pytest.param({"prompt": "bogus"}, id="unknown"),
        pytest.param({"prompt": "select_account"}, id="select-account"),
        pytest.param({"prompt": "login bogus"}, id="known-and-unknown"),
        pytest.param({"prompt": "LOGIN"}, id="case-sensitive"),
        pytest.param({"prompt": "login\tconsent"}, id="tab-separated"),
        pytest.param({"prompt": "é"}, id="non-ascii"),
        pytest.param({"max_age": "-1"}, id="max-age-negative"),
        pytest.param({"max_age": "abc"}, id="max-age-text"),
        pytest.param({"max_age": "1.5"}, id="max-age-fraction"),
        pytest.param({"max_age": "1e3"}, id="max-age-exponent"),
        pytest.param({"max_age": "\uff11"}, id="max-age-fullwidth-digit"),
        pytest.param({"max_age": " 5"}, id="max-age-space"),
    ],
)
def test_bad_prompt_or_max_age_is_invalid_request(client, user, rp, params):
    for signed in (False, True):
        if signed:
            signed_in(client, rp, user.email)
        back = redirect_params(client.get(authorize_url(rp, state="st-1", **params)))
        assert back["error"] == "invalid_request", back
        assert (back["state"], back["iss"]) == ("st-1", ISSUER)
        assert "code" not in back


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param(
            {"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported", id="request"
        ),
        pytest.param({"registration": "{}"}, "registration_not_supported", id="registration"),
        pytest.param({"response_mode": "form_post"}, "invalid_request", id="form-post"),
        pytest.param({"response_mode": "fragment"}, "invalid_request", id="fragment"),
        pytest.param({"response_mode": "é" * 300}, "invalid_request", id="response-mode-odd"),
    ],
)
def test_unsupported_request_features_are_refused_not_ignored(client, user, rp, params, error):
    """OIDC Core §3.1.2.6: a request object or a response mode not served is answered with an
    error, never silently dropped (the client believes what it sent applies)."""
    for signed in (False, True):
        if signed:
            signed_in(client, rp, user.email)
        back = redirect_params(client.get(authorize_url(rp, state="st-1", **params)))
        assert back["error"] == error, back
        assert (back["state"], back["iss"]) == ("st-1", ISSUER)
        assert "code" not in back


def test_response_mode_query_is_the_default_spelled_out(client, user, rp):
    signed_in(client, rp, user.email)
    page = client.get(authorize_url(rp, response_mode="query"))
    assert page.status_code == 200 and 'value="allow"' in page.text


def test_repeated_prompt_is_refused_with_an_error_page(client, rp):
    page = client.get(authorize_url(rp, prompt="login") + "&prompt=consent")
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "A parameter is repeated." in page.text


@pytest.mark.parametrize("params", [{"prompt": ""}, {"max_age": ""}, {"prompt": " "}])
def test_empty_prompt_or_max_age_counts_as_absent(client, user, rp, params):
    """RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were
    omitted"."""
    assert is_login_form(client.get(authorize_url(rp, **params)))
    signed_in(client, rp, user.email)
    assert is_consent_page(client.get(authorize_url(rp, **params)))


@pytest.mark.parametrize("max_age", ["99999999999999999999999999999999", "3600", "00010000"])
def test_large_max_age_is_no_constraint(client, user, rp, max_age):
    signed_in(client, rp, user.email)
    assert is_consent_page(client.get(authorize_url(rp, max_age=max_age)))


@pytest.mark.parametrize(
    "params",
    [pytest.param({"prompt": "login"}, id="prompt-login"), pytest.param({"max_age": "0"}, id="0")],
)
def test_forced_login_shows_the_form_once_per_request(client, config, user, rp, params):
    signed_in(client, rp, user.email)
    first = cookie_session(client, config)
    url = authorize_url(rp, scope="openid", state="again", **params)

    page = client.get(url)
    assert is_login_form(page)
    assert "Sign in again" in page.text
    assert user.email in page.text  # the email filled in
    # the consent page's form, already signed in, is not let through without the login
    response = client.post(url, data={"action": "allow", "csrf_token": csrf_token(page)})
    assert response.status_code == 303
    assert is_login_form(client.get(url))

    posted = login(client, url, user.email)
    assert posted.status_code == 303 and posted.headers["location"] == url
    page = client.get(url)  # the same request after the login: no second login form
    assert is_consent_page(page), page.text
    back = allow(client, url)
    claims = id_token_claims(client, rp, back["code"])
    second = cookie_session(client, config)
    assert claims["sid"] == second.sid != first.sid
    assert claims["auth_time"] == int(second.auth_time) >= int(first.auth_time)
    assert second.fresh_for is None  # answered: the very same request again asks again
    assert is_login_form(client.get(url))


def test_max_age_compares_with_the_login_time(client, config, user, rp):
    signed_in(client, rp, user.email)
    session = cookie_session(client, config)
    set_cookie_session(client, config, dataclasses.replace(session, auth_time=time.time() - 100))
    assert is_login_form(client.get(authorize_url(rp, max_age="50")))
    assert is_consent_page(client.get(authorize_url(rp, max_age="500")))


def test_prompt_consent_shows_the_page_even_when_remembered(client, user, rp):
    url = signed_in(client, rp, user.email)
    assert "code" in allow(client, url)
    assert client.get(url).status_code == 302  # remembered
    assert is_consent_page(client.get(authorize_url(rp, prompt="consent")))


def test_prompt_login_and_consent_together(client, user, rp):
    url = signed_in(client, rp, user.email)
    allow(client, url)
    url = authorize_url(rp, prompt="login consent")
    assert is_login_form(client.get(url))
    login(client, url, user.email)
    assert is_consent_page(client.get(url))


# --- prompt=none: never a page ------------------------------------------------------------------


def test_prompt_none_without_a_session_is_login_required(client, rp):
    response = client.get(authorize_url(rp, prompt="none", state="s-none"))
    back = redirect_params(response)
    assert back == {"error": "login_required", "state": "s-none", "iss": ISSUER}
    assert "text/html" not in response.headers.get("content-type", "")


def test_prompt_none_with_a_session_but_no_consent_is_consent_required(client, user, rp, rp2):
    signed_in(client, rp, user.email)
    back = redirect_params(client.get(authorize_url(rp2, prompt="none", state="s2")))
    assert back == {"error": "consent_required", "state": "s2", "iss": ISSUER}


def test_prompt_none_with_session_and_consent_gives_a_code(client, user, rp):
    url = signed_in(client, rp, user.email, scope="openid orders:read")
    allow(client, url)
    back = redirect_params(client.get(authorize_url(rp, prompt="none", scope="openid")))
    assert set(back) == {"code", "state", "iss"}
    assert id_token_claims(client, rp, back["code"])["sub"] == user.id


def test_prompt_none_for_a_first_party_client_inside_a_session(client, storage, user, rp):
    own = relying_party(storage, "Account centre", first_party=True)
    signed_in(client, rp, user.email)
    assert "code" in redirect_params(client.get(authorize_url(own, prompt="none")))


def test_prompt_none_with_max_age_exceeded_is_login_required(client, config, user, rp):
    url = signed_in(client, rp, user.email)
    allow(client, url)
    session = cookie_session(client, config)
    set_cookie_session(client, config, dataclasses.replace(session, auth_time=time.time() - 100))
    back = redirect_params(client.get(authorize_url(rp, prompt="none", max_age="10")))
    assert back["error"] == "login_required"


def test_prompt_none_after_the_session_ended_is_login_required(client, config, storage, user, rp):
    url = signed_in(client, rp, user.email)
    allow(client, url)
    update_row(storage, cookie_session(client, config).sid, ended_at=time.time())
    assert redirect_params(client.get(authorize_url(rp, prompt="none")))["error"] == (
        "login_required"
    )


def test_prompt_none_never_takes_a_form(client, user, rp):
    """A form posted to a prompt=none request is interaction: refused, and no code."""
    signed_in(client, rp, user.email)
    token = csrf_token(client.get(authorize_url(rp)))  # a real token of this session
    response = client.post(
        authorize_url(rp, prompt="none", state="p"), data={"action": "allow", "csrf_token": token}
    )
    back = redirect_params(response)
    assert back == {"error": "interaction_required", "state": "p", "iss": ISSUER}


def test_prompt_none_with_a_bad_client_is_still_an_error_page(client, rp):
    page = client.get(authorize_url(rp, prompt="none", redirect_uri="https://evil.example/cb"))
    assert page.status_code == 400
    assert "location" not in page.headers
