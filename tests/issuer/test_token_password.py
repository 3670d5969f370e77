"""The resource owner password credentials grant (RFC 6749 §4.3), with the brute-force
protection RFC 6749 §4.3.2 asks for: failures are throttled per user and per client address, and
an unknown user is indistinguishable from a wrong password (RFC 6749 §10.10)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER, PASSWORD, make_client
from tests.issuer.conftest import (
    authorize_url,
    decode,
    login,
    oauth_error,
    password_grant,
    token_request,
    tokens,
)


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


def test_failures_are_throttled_per_user(app, user, confidential):
    """After max_failures (default 5) failed attempts for a user, even the right password is
    refused, from any address."""
    max_failures = app.gateway.config.throttle.max_failures
    assert max_failures == 5
    for i in range(max_failures):
        attacker = TestClient(app, base_url=ISSUER, client=(f"10.0.0.{i + 1}", 4000))
        oauth_error(password_grant(attacker, confidential, password="guess"), 400, "invalid_grant")
    victim = TestClient(app, base_url=ISSUER, client=("10.9.9.9", 4000))
    body = oauth_error(password_grant(victim, confidential), 400, "invalid_grant")
    assert "Too many" in body["error_description"]


def test_failures_are_throttled_per_client_address(app, storage, user, confidential):
    """Guessing many users' passwords from one address is throttled too."""
    attacker = TestClient(app, base_url=ISSUER, client=("10.0.0.1", 4000))
    for i in range(5):
        response = password_grant(attacker, confidential, email=f"user{i}@example.com")
        oauth_error(response, 400, "invalid_grant")
    oauth_error(password_grant(attacker, confidential), 400, "invalid_grant")
    elsewhere = TestClient(app, base_url=ISSUER, client=("10.0.0.2", 4000))
    tokens(password_grant(elsewhere, confidential))


def test_fewer_failures_than_the_limit_do_not_block(app, user, confidential):
    client = TestClient(app, base_url=ISSUER, client=("10.0.0.1", 4000))
    for _ in range(4):
        oauth_error(password_grant(client, confidential, password="guess"), 400, "invalid_grant")
    tokens(password_grant(client, confidential))


def test_login_page_shares_the_throttle(app, user, confidential):
    client = TestClient(app, base_url=ISSUER, client=("10.0.0.1", 4000))
    for _ in range(5):
        oauth_error(password_grant(client, confidential, password="guess"), 400, "invalid_grant")
    response = login(client, authorize_url(confidential), user.email)
    assert response.status_code == 401
    assert "Too many failed attempts" in response.text
