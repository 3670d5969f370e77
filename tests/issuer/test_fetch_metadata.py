"""The pages' browser rules (issue 15 §3, §4): every form POST (login, consent, "Not you?", the
logout confirmation) only as a person's navigation from our own page, by Fetch Metadata; and no
answer sets or clears the session cookie of a browser that did not send one, but for the first
page of a sign-in (a top-level GET navigation shown a form).

Without any ``Sec-Fetch-*`` header (this test client, an older browser) the CSRF token alone
decides, as the rest of the issuer's tests show."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from gateway.consents import granted_scopes
from gateway.issuer.fetch_metadata import is_navigation
from gateway.issuer.session import COOKIE
from tests.support.issuer import authorize_url, csrf_token, login
from tests.support.oidc import (
    LOGGED_OUT,
    cookie_session,
    is_consent_page,
    is_login_form,
    relying_party,
    session_row,
    sign_in_with_tokens,
    signed_in,
)

LOGOUT = "/oauth/logout"

#: what Chromium sends (checked in tests/issuer/test_fetch_metadata_browser.py)
FORM = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
PERSON = {**FORM, "sec-fetch-user": "?1"}
LINK_FROM_CLIENT = {**PERSON, "sec-fetch-site": "cross-site"}
TYPED = {**PERSON, "sec-fetch-site": "none"}
FETCH = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"}
CROSS_SITE_FORM = {**FORM, "sec-fetch-site": "cross-site"}
IFRAME = {**FORM, "sec-fetch-dest": "iframe"}

#: header sets a form POST is refused with: anything but a same-origin document navigation
NOT_A_FORM = [
    pytest.param(FETCH, id="fetch-cors"),
    pytest.param({**FETCH, "sec-fetch-mode": "same-origin"}, id="fetch-same-origin"),
    pytest.param({**FETCH, "sec-fetch-mode": "no-cors"}, id="no-cors"),
    pytest.param(CROSS_SITE_FORM, id="cross-site-form"),
    pytest.param({**FORM, "sec-fetch-site": "same-site"}, id="same-site-form"),
    pytest.param({**FORM, "sec-fetch-site": "none"}, id="site-none"),
    pytest.param(IFRAME, id="iframe"),
    pytest.param({**FORM, "sec-fetch-mode": "nested-navigate"}, id="nested-navigate"),
    pytest.param({"sec-fetch-site": "same-origin"}, id="site-only"),
    pytest.param({"sec-fetch-user": "?1"}, id="user-only"),
    pytest.param({"sec-fetch-dest": "document", "sec-fetch-mode": "navigate"}, id="no-site"),
    pytest.param({"sec-fetch-storage-access": "none"}, id="another-sec-fetch-header"),
    pytest.param({**FORM, "sec-fetch-site": "Same-Origin"}, id="value-case"),
    pytest.param({**FORM, "sec-fetch-site": " same-origin"}, id="value-space"),
]


@pytest.fixture
def rp(storage):
    return relying_party(storage, "Orders web")


def headers(values: dict[str, str], *extra: tuple[str, str]) -> Headers:
    raw = [(k.encode(), v.encode()) for k, v in values.items()]
    raw += [(k.encode(), v.encode()) for k, v in extra]
    return Headers(raw=raw)


# --- the rule itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "navigation", "form"),
    [
        pytest.param({}, True, True, id="none-sent"),
        pytest.param(FORM, True, True, id="same-origin-form"),
        pytest.param(PERSON, True, True, id="same-origin-form-user"),
        pytest.param(LINK_FROM_CLIENT, True, False, id="link-from-another-site"),
        pytest.param(TYPED, True, False, id="typed-url"),
        pytest.param({**FORM, "sec-fetch-site": "same-site"}, True, False, id="same-site"),
        pytest.param(FETCH, False, False, id="fetch"),
        pytest.param(IFRAME, False, False, id="iframe"),
        pytest.param({**FORM, "sec-fetch-dest": "empty"}, False, False, id="dest-empty"),
        pytest.param({"sec-fetch-site": "same-origin"}, False, False, id="incomplete"),
        pytest.param({"sec-fetch-unknown": "x"}, False, False, id="unknown-only"),
    ],
)
def test_is_navigation(sent: dict[str, str], navigation: bool, form: bool) -> None:
    assert is_navigation(headers(sent)) is navigation
    assert is_navigation(headers(sent), same_origin=True) is form


@pytest.mark.parametrize("name", ["sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"])
def test_a_repeated_header_is_no_navigation(name: str) -> None:
    sent = headers(FORM, (name, FORM[name]))
    assert not is_navigation(sent, same_origin=True)
    assert is_navigation(sent) is (name == "sec-fetch-site")  # the site does not count there


# --- every form POST -----------------------------------------------------------------------------


def assert_refused(response) -> None:
    assert response.status_code == 403, response.text
    assert "access_denied" in response.text
    assert "set-cookie" not in response.headers
    assert "location" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("sent", NOT_A_FORM)
def test_the_login_form(client, user, rp, sent):
    url = authorize_url(rp, state="<marker>")
    page = client.get(url)
    form = {"action": "login", "email": user.email, "password": "correct horse battery staple"}
    response = client.post(url, data={**form, "csrf_token": csrf_token(page)}, headers=sent)
    assert_refused(response)
    assert "marker" not in response.text  # nothing of the request is reflected
    assert is_login_form(client.get(url))  # not signed in
    # posted as a person does: signed in
    response = client.post(url, data={**form, "csrf_token": csrf_token(page)}, headers=PERSON)
    assert response.status_code == 303


@pytest.mark.parametrize("sent", NOT_A_FORM)
def test_the_consent_form(client, storage, user, rp, sent):
    url = signed_in(client, rp, user.email)
    page = client.get(url)
    assert is_consent_page(page)
    form = {"action": "allow", "csrf_token": csrf_token(page)}
    assert_refused(client.post(url, data=form, headers=sent))
    assert granted_scopes(storage, user.id, rp.client_id) is None  # nothing stored
    response = client.post(url, data=form, headers=PERSON)
    assert response.status_code == 302
    assert granted_scopes(storage, user.id, rp.client_id) is not None


@pytest.mark.parametrize("sent", NOT_A_FORM)
def test_not_you_on_the_consent_page(client, config, storage, user, rp, sent):
    url = signed_in(client, rp, user.email)
    sid = cookie_session(client, config).sid
    form = {"action": "logout", "csrf_token": csrf_token(client.get(url))}
    assert_refused(client.post(url, data=form, headers=sent))
    assert session_row(storage, sid).ended_at is None
    assert is_consent_page(client.get(url))  # still signed in
    assert client.post(url, data=form, headers=PERSON).status_code == 303
    assert session_row(storage, sid).ended_at is not None


@pytest.mark.parametrize("sent", NOT_A_FORM)
def test_the_logout_confirmation(client, config, storage, user, rp, sent):
    url = signed_in(client, rp, user.email)
    sid = cookie_session(client, config).sid
    page = client.get(LOGOUT, headers=PERSON)
    assert page.status_code == 200 and 'value="logout"' in page.text
    form = {"action": "logout", "csrf_token": csrf_token(page)}
    assert_refused(client.post(LOGOUT, data=form, headers=sent))
    assert session_row(storage, sid).ended_at is None
    assert is_consent_page(client.get(url))  # still signed in
    done = client.post(LOGOUT, data=form, headers=PERSON)
    assert "You are signed out" in done.text
    assert session_row(storage, sid).ended_at is not None


# --- the session cookie ---------------------------------------------------------------------------


def sets_cookie(response) -> bool:
    return any(v.startswith(f"{COOKIE}=") for v in response.headers.get_list("set-cookie"))


@pytest.mark.parametrize(
    ("sent", "cookie"),
    [
        pytest.param({}, True, id="no-fetch-metadata"),
        pytest.param(LINK_FROM_CLIENT, True, id="link-from-the-client"),
        pytest.param(TYPED, True, id="typed-url"),
        pytest.param(PERSON, True, id="same-origin-link"),
        pytest.param(FETCH, False, id="fetch"),
        pytest.param(IFRAME, False, id="iframe"),
        pytest.param({"sec-fetch-site": "cross-site"}, False, id="incomplete"),
    ],
)
def test_the_first_page_of_a_sign_in_sets_one_on_a_navigation_only(client, rp, sent, cookie):
    response = client.get(authorize_url(rp), headers=sent)
    assert is_login_form(response)
    assert sets_cookie(response) is cookie


def test_an_error_page_sets_none(client, rp):
    response = client.get(authorize_url(rp, redirect_uri="http://127.0.0.1:9999/other"))
    assert response.status_code == 400
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "sent",
    [pytest.param({}, id="no-fetch-metadata"), pytest.param(CROSS_SITE_FORM, id="cross-site")],
)
def test_a_post_without_the_cookie_leaves_the_browsers_alone(
    client, config, storage, user, rp, sent
):
    """Another site's form carries no SameSite=Lax cookie: its answer must not replace the
    user's (it would sign them out)."""
    url = signed_in(client, rp, user.email)
    sid = cookie_session(client, config).sid
    kept = client.cookies[COOKIE]
    client.cookies.clear()  # what the browser does not send
    for action in ("allow", "logout", "login"):
        response = client.post(url, data={"action": action}, headers=sent)
        assert response.status_code in (400, 403)
        assert "set-cookie" not in response.headers
    client.cookies.set(COOKIE, kept, path="/oauth")
    assert session_row(storage, sid).ended_at is None
    assert is_consent_page(client.get(url))


def test_a_wrong_csrf_token_changes_no_session(client, config, user, rp):
    url = signed_in(client, rp, user.email)
    response = client.post(url, data={"action": "allow", "csrf_token": "wrong"})
    assert response.status_code == 400
    assert "set-cookie" not in response.headers
    assert is_consent_page(client.get(url))


# --- logout without the cookie --------------------------------------------------------------------


def test_a_logout_post_without_the_cookie_is_asked_on_a_get(client, config, storage, user, rp):
    """Another site's POST (no hint): the browser is sent to the confirmation page by a GET,
    which carries its cookie, so the page is bound to the session the user would end."""
    signed_in(client, rp, user.email)
    sid = cookie_session(client, config).sid
    kept = client.cookies[COOKIE]
    client.cookies.clear()
    params = {"client_id": rp.client_id, "post_logout_redirect_uri": LOGGED_OUT, "state": "s t"}
    response = client.post(LOGOUT, data=params, headers=CROSS_SITE_FORM)
    assert response.status_code == 303
    assert "set-cookie" not in response.headers
    location = response.headers["location"]
    assert location.startswith(LOGOUT + "?")
    assert session_row(storage, sid).ended_at is None

    client.cookies.set(COOKIE, kept, path="/oauth")
    page = client.get(location, headers=LINK_FROM_CLIENT)
    assert page.status_code == 200 and "Orders web" in page.text
    form = {"action": "logout", "csrf_token": csrf_token(page), **params}
    done = client.post(LOGOUT, data=form, headers=PERSON)
    assert done.status_code == 302
    assert done.headers["location"] == LOGGED_OUT + "?state=s+t"
    assert session_row(storage, sid).ended_at is not None


def test_a_logout_post_with_a_bad_hint_and_no_cookie_is_asked_on_a_get(client, rp):
    response = client.post(LOGOUT, data={"id_token_hint": "not.a.token", "state": "x"})
    assert response.status_code == 303
    assert response.headers["location"] == LOGOUT + "?state=x"
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_hint_without_the_cookie_ends_its_session_and_clears_no_cookie(
    client, config, storage, user, rp, method
):
    """RP-initiated logout by a cross-site POST still ends the hinted session; the browser's
    cookie, not sent, is not cleared (it may be a newer session's)."""
    issued = sign_in_with_tokens(client, rp, user)
    sid = cookie_session(client, config).sid
    client.cookies.clear()
    params = {"id_token_hint": issued["id_token"], "post_logout_redirect_uri": LOGGED_OUT}
    if method == "GET":
        response = client.get(LOGOUT, params=params, headers=LINK_FROM_CLIENT)
    else:
        response = client.post(LOGOUT, data=params, headers=CROSS_SITE_FORM)
    assert response.status_code == 302
    assert "set-cookie" not in response.headers
    assert session_row(storage, sid).ended_at is not None


def test_the_logout_confirmation_without_a_cookie_sets_one_on_a_navigation(client):
    page = client.get(LOGOUT, headers=TYPED)
    assert page.status_code == 200 and 'value="logout"' in page.text
    assert sets_cookie(page)
    client.cookies.clear()
    assert not sets_cookie(client.get(LOGOUT, headers=FETCH))


def test_login_still_works_without_fetch_metadata(client, user, rp):
    url = authorize_url(rp)
    assert login(client, url, user.email).status_code == 303
