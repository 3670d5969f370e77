"""The resource owner password credentials grant (RFC 6749 §4.3), with the brute-force
protection RFC 6749 §4.3.2 asks for (tests/test_throttle.py), and
an unknown user is indistinguishable from a wrong password (RFC 6749 §10.10)."""

from __future__ import annotations

import pytest

from tests.support.app import PASSWORD, make_client
from tests.support.issuer import decode, oauth_error, password_grant, token_request, tokens


def test_password_grant_issues_tokens_for_the_user(client, user, confidential):
    response = password_grant(client, confidential)
    issued = tokens(response)
    assert response.headers["cache-control"] == "no-store"
    assert issued["token_type"] == "Bearer"
    assert issued["refresh_token"]
    claims = decode(client, issued["access_token"])
    assert (claims["sub"], claims["email"]) == (user.id, user.email)


def test_email_is_matched_case_insensitively(client, user, confidential):
    tokens(password_grant(client, confidential, email="  Alice@Example.COM "))


def test_only_clients_allowed_the_password_grant(client, storage, user):
    app = make_client(storage, grant_types=("authorization_code", "refresh_token"))
    oauth_error(password_grant(client, app), 400, "unauthorized_client")


def test_no_refresh_token_for_a_client_without_the_refresh_grant(client, storage, user):
    app = make_client(storage, grant_types=("password",))
    assert "refresh_token" not in tokens(password_grant(client, app))


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"password": PASSWORD}, id="no-username"),
        pytest.param({"username": "alice@example.com"}, id="no-password"),
    ],
)
def test_missing_credentials_are_invalid_request(client, user, confidential, form):
    response = token_request(client, confidential, grant_type="password", **form)
    oauth_error(response, 400, "invalid_request")


def test_unknown_user_and_wrong_password_answer_the_same(client, user, confidential):
    unknown = password_grant(client, confidential, email="nobody@example.com")
    wrong = password_grant(client, confidential, password="not the password")
    oauth_error(unknown, 400, "invalid_grant")
    assert (unknown.status_code, unknown.content) == (wrong.status_code, wrong.content)


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param("alice@example.com", "x" * 100_000, id="huge-password"),
        pytest.param("a" * 100_000 + "@example.com", PASSWORD, id="huge-username"),
        pytest.param("alice@example.com", "", id="empty-password"),
        pytest.param("", PASSWORD, id="empty-username"),
        pytest.param("alice@example.com\x00", PASSWORD, id="nul"),
        pytest.param("ålice@exämple.com", "pässwörd-ünïcode", id="unicode"),
    ],
)
def test_odd_credentials_are_invalid_grant(client, user, confidential, email, password):
    oauth_error(password_grant(client, confidential, email, password), 400, "invalid_grant")
