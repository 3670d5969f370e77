"""What the fuzz tests found, kept as explicit cases: each was a 500 before its fix."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from gateway.issuer.session import COOKIE
from tests.support.app import Registered
from tests.support.issuer import INTROSPECT, REVOKE, TOKEN, authorize_url, csrf_token, oauth_error

FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("endpoint", [TOKEN, REVOKE, INTROSPECT])
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(b"Basic ", id="scheme-and-space"),
        pytest.param(b"Basic \t ", id="scheme-and-blanks"),
        pytest.param(b"Bearer  ", id="other-scheme-and-spaces"),
    ],
)
def test_authorization_header_without_credentials_is_401(
    client: TestClient, endpoint: str, authorization: bytes
) -> None:
    """Authlib split "Basic " into scheme and credentials and raised ValueError."""
    response = client.post(
        endpoint,
        content=b"grant_type=client_credentials&token=abc",
        headers={b"content-type": FORM.encode(), b"authorization": authorization},
    )
    oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param(b".\x80", id="non-ascii-tag"),
        pytest.param(b"\xe9.abc", id="non-ascii-data"),
    ],
)
def test_session_cookie_with_non_ascii_is_ignored(
    client: TestClient, confidential: Registered, cookie: bytes
) -> None:
    """hmac.compare_digest raised TypeError on a str with non-ASCII characters."""
    response = client.get(
        authorize_url(confidential), headers={b"cookie": COOKIE.encode() + b"=" + cookie}
    )
    assert response.status_code == 200, response.text
    assert 'name="password"' in response.text


@pytest.mark.parametrize(
    "token", [pytest.param("é", id="non-ascii"), pytest.param("\x80x", id="c1")]
)
def test_csrf_token_with_non_ascii_is_refused(
    client: TestClient, confidential: Registered, token: str
) -> None:
    url = authorize_url(confidential)
    csrf_token(client.get(url))  # a session cookie to check the token against
    response = client.post(url, data={"action": "login", "csrf_token": token})
    assert response.status_code == 400, response.text
    assert "invalid_request" in response.text
