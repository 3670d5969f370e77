"""No request's words in an answer: an error page or an ``error_description`` never quotes a
parameter's name or value. An error page that said "Repeated parameter: Your account is
suspended. Call ..." under the gateway's name was a phishing page anyone could link to.

Each request below carries a marker where a client chooses the text; the marker must appear
nowhere in the answer: not in its body, nor in a header (a redirect's ``error_description``).
``state`` is left out: RFC 6749 §4.1.2.1 has it echoed, to the registered redirect URI only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.app import Registered
from tests.support.issuer import AUTHORIZE, INTROSPECT, REDIRECT_URI, REVOKE, TOKEN

MARKER = "zqYourAccountIsSuspendedzq"


def assert_not_reflected(response: Any) -> None:
    assert response.status_code < 500, response.text
    assert MARKER not in response.text, response.text
    for name, value in response.headers.items():
        assert MARKER not in value, (name, value)


AUTHORIZE_CASES = [
    pytest.param({"redirect_uri": f"https://evil.example/{MARKER}"}, id="redirect-uri"),
    pytest.param({"response_type": MARKER}, id="response-type"),
    pytest.param({"scope": MARKER}, id="scope"),
    pytest.param({"scope": f"orders:read {MARKER}"}, id="one-unknown-scope"),
    pytest.param({"client_id": MARKER}, id="client-id"),
    pytest.param({"prompt": MARKER}, id="prompt"),
    pytest.param({"max_age": MARKER}, id="max-age"),
    pytest.param({"response_mode": MARKER}, id="response-mode"),
    pytest.param({"code_challenge": "x" * 43, "code_challenge_method": MARKER}, id="pkce-method"),
    pytest.param({"nonce": MARKER * 20}, id="long-nonce"),
    pytest.param({"request": MARKER}, id="request-object"),
]


@pytest.mark.parametrize("params", AUTHORIZE_CASES)
def test_authorization_errors_quote_nothing(client, confidential: Registered, params):
    query = {
        "response_type": "code",
        "client_id": confidential.client_id,
        "redirect_uri": REDIRECT_URI,
        **params,
    }
    response = client.get(AUTHORIZE, params=query, follow_redirects=False)
    assert response.status_code in (302, 400), response.text
    assert_not_reflected(response)


@pytest.mark.parametrize("where", ["query", "form"])
def test_a_repeated_parameter_is_not_named(client, confidential: Registered, where):
    """The attack as found: the parameter's name, repeated, was the page's message."""
    pairs = [(MARKER, "1"), (MARKER, "2")]
    if where == "query":
        url = f"{AUTHORIZE}?client_id={confidential.client_id}&response_type=code"
        response = client.get(url, params=pairs, follow_redirects=False)
    else:
        response = client.post(
            TOKEN,
            content=f"grant_type=client_credentials&{MARKER}=1&{MARKER}=2",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=confidential.auth,
        )
    assert response.status_code in (302, 400), response.text
    assert_not_reflected(response)


TOKEN_CASES = [
    pytest.param({"grant_type": MARKER}, id="grant-type"),
    pytest.param({"grant_type": "client_credentials", "scope": MARKER}, id="scope"),
    pytest.param(
        {"grant_type": "authorization_code", "code": MARKER, "redirect_uri": MARKER},
        id="code",
    ),
    pytest.param({"grant_type": "refresh_token", "refresh_token": MARKER}, id="refresh-token"),
    pytest.param({"grant_type": "password", "username": MARKER, "password": MARKER}, id="password"),
]


@pytest.mark.parametrize("form", TOKEN_CASES)
def test_token_errors_quote_nothing(client, confidential: Registered, form):
    assert_not_reflected(client.post(TOKEN, data=form, auth=confidential.auth))


@pytest.mark.parametrize("endpoint", [TOKEN, REVOKE, INTROSPECT])
@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"client_id": MARKER, "client_secret": MARKER}, id="post"),
        pytest.param({"client_id": MARKER}, id="none"),
    ],
)
def test_client_authentication_errors_quote_nothing(client, endpoint, credentials):
    form = {"grant_type": "client_credentials", "token": MARKER, **credentials}
    assert_not_reflected(client.post(endpoint, data=form))


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"id_token_hint": MARKER}, id="hint"),
        pytest.param({"post_logout_redirect_uri": f"https://evil.example/{MARKER}"}, id="uri"),
        pytest.param({"client_id": MARKER}, id="client-id"),
    ],
)
def test_logout_errors_quote_nothing(client, params):
    assert_not_reflected(client.get("/oauth/logout", params=params, follow_redirects=False))


def test_userinfo_errors_quote_nothing(client):
    response = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {MARKER}"})
    assert response.status_code == 401
    assert_not_reflected(response)
