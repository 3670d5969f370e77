"""Authlib's own OAuth 2.0 client and PyJWT's JWKS client against a live ``gateway serve``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from authlib.integrations.httpx_client import OAuthError

from tests.support.live import LiveGateway, RedirectTarget, parse_page
from tests.support.oauth import (
    CLIENT_CLAIMS,
    USER_CLAIMS,
    AuthorizationFlow,
    introspect,
    oauth_client,
    password_token,
    verify_offline,
)

pytestmark = pytest.mark.live

SCOPES = "orders:read orders:write"
#: what the clients are registered for: SCOPES, and ``profile`` (releases the e-mail address)
REGISTERED = SCOPES + " profile"


@pytest.fixture(scope="module")
def confidential(live_gateway: LiveGateway, redirect_target: RedirectTarget) -> dict[str, Any]:
    return live_gateway.create_client(
        "Orders web app",
        grant_types=("authorization_code", "password", "refresh_token", "client_credentials"),
        scope=REGISTERED,
        redirect_uris=(redirect_target.redirect_uri,),
    )


@pytest.fixture(scope="module")
def public(live_gateway: LiveGateway, redirect_target: RedirectTarget) -> dict[str, Any]:
    return live_gateway.create_client(
        "Orders mobile app",
        grant_types=("authorization_code", "refresh_token"),
        scope=REGISTERED,
        redirect_uris=(redirect_target.redirect_uri,),
        public=True,
    )


# --- RFC 8414 ------------------------------------------------------------------------------


def test_metadata_names_the_live_endpoints(live_gateway: LiveGateway) -> None:
    metadata = live_gateway.metadata()
    base = live_gateway.base_url
    assert metadata["issuer"] == base
    assert metadata["token_endpoint"] == f"{base}/oauth/token"
    assert metadata["jwks_uri"] == f"{base}/.well-known/jwks.json"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


# --- RFC 6749 §4.3: password grant ---------------------------------------------------------


def test_password_grant(
    live_gateway: LiveGateway,
    confidential: dict[str, Any],
    live_resource_server: dict[str, Any],
    alice: str,
) -> None:
    token = password_token(live_gateway, confidential, alice, scope="orders:read")

    assert token["token_type"] == "Bearer"
    assert token["scope"] == "orders:read"
    assert token["expires_in"] > 0
    assert token["refresh_token"]
    info = introspect(live_gateway, live_resource_server, token["access_token"])
    assert info["active"] is True
    assert info["client_id"] == confidential["client_id"]
    assert "username" not in info  # orders:read releases no e-mail address (RFC 9068 §6)


@pytest.mark.parametrize("scope", ["profile", "orders:read profile"])
def test_the_email_address_only_with_a_scope_that_releases_it(
    live_gateway: LiveGateway,
    confidential: dict[str, Any],
    live_resource_server: dict[str, Any],
    alice: str,
    scope: str,
) -> None:
    """RFC 9068 §6: a client reads its access token; the address is in it, in the identity
    headers and in introspection only for a grant that includes ``email`` or ``profile``."""
    token = password_token(live_gateway, confidential, alice, scope=scope)
    claims = verify_offline(live_gateway, token["access_token"], (*USER_CLAIMS, "email"))
    assert claims["email"] == alice
    info = introspect(live_gateway, live_resource_server, token["access_token"])
    assert info["username"] == alice


# Each failure counts against 127.0.0.1 on the shared server, whose throttle refuses a user there
# after [throttle] max_failures (5) failures and the address after 20: keep failed logins in the
# live suite below that.
@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param(None, "not the password", id="wrong-password"),
        pytest.param("nobody@example.com", "correct horse battery staple", id="unknown-user"),
    ],
)
def test_password_grant_refuses_bad_credentials(
    live_gateway: LiveGateway,
    confidential: dict[str, Any],
    alice: str,
    username: str | None,
    password: str,
) -> None:
    with oauth_client(confidential) as oauth, pytest.raises(OAuthError) as failed:
        oauth.fetch_token(
            live_gateway.metadata()["token_endpoint"],
            username=username or alice,
            password=password,
        )
    assert failed.value.error == "invalid_grant"
    assert failed.value.description == "Invalid username or password."


# --- RFC 6749 §6, RFC 9700 §4.14.2: refresh with rotation and reuse detection -------------


def test_refresh_rotates_the_refresh_token(
    live_gateway: LiveGateway,
    confidential: dict[str, Any],
    live_resource_server: dict[str, Any],
    alice: str,
) -> None:
    first = password_token(live_gateway, confidential, alice)
    token_endpoint = live_gateway.metadata()["token_endpoint"]

    with oauth_client(confidential) as oauth:
        second = oauth.refresh_token(token_endpoint, refresh_token=first["refresh_token"])
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["scope"] == first["scope"]
        old = verify_offline(live_gateway, first["access_token"], USER_CLAIMS)
        new = verify_offline(live_gateway, second["access_token"], USER_CLAIMS)
        assert new["sid"] == old["sid"]  # one grant, one refresh-token family
        assert new["jti"] != old["jti"]
        assert new["auth_time"] == old["auth_time"]  # refreshing is no new login
        assert introspect(live_gateway, live_resource_server, first["refresh_token"]) == {
            "active": False
        }

        # the rotated token presented again: a leak, so the whole family is revoked
        with pytest.raises(OAuthError) as reused:
            oauth.refresh_token(token_endpoint, refresh_token=first["refresh_token"])
        assert reused.value.error == "invalid_grant"
        with pytest.raises(OAuthError) as after_reuse:
            oauth.refresh_token(token_endpoint, refresh_token=second["refresh_token"])
        assert after_reuse.value.error == "invalid_grant"
    assert introspect(live_gateway, live_resource_server, second["access_token"])["active"] is False


# --- RFC 6749 §4.1 + RFC 7636 + RFC 9207: authorization code with PKCE ----------------------


@pytest.mark.parametrize("client_kind", ["confidential", "public"])
def test_authorization_code_with_pkce(
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    live_resource_server: dict[str, Any],
    alice: str,
    client_kind: str,
    request: pytest.FixtureRequest,
) -> None:
    client = request.getfixturevalue(client_kind)
    uri = redirect_target.redirect_uri
    # prompt=consent: the page is shown even if alice allowed this client before
    with AuthorizationFlow(live_gateway, client, uri, SCOPES, prompt="consent") as flow:
        consent = flow.login(alice)
        page = parse_page(consent.text)
        assert client["name"] in page.text
        assert {"orders:read", "orders:write"} <= set(page.text)
        assert alice in page.text

        back = flow.decide(consent, "allow")
        assert back["state"] == flow.state
        assert back["iss"] == live_gateway.base_url  # RFC 9207 §2
        assert back["code"]

        token = flow.fetch_token()
        assert token["token_type"] == "Bearer"
        assert set(token["scope"].split()) == set(SCOPES.split())
        claims = verify_offline(live_gateway, token["access_token"], USER_CLAIMS)
        assert claims["client_id"] == client["client_id"]
        assert "email" not in claims  # not a scope of this grant (RFC 9068 §6)
        assert claims["auth_time"] <= claims["iat"]

        # RFC 6749 §4.1.2: the code works once; a replay revokes what it gave
        with pytest.raises(OAuthError) as replayed:
            flow.fetch_token()
        assert replayed.value.error == "invalid_grant"
    assert introspect(live_gateway, live_resource_server, token["access_token"])["active"] is False


def test_authorization_code_needs_the_pkce_verifier(
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    confidential: dict[str, Any],
    alice: str,
) -> None:
    uri = redirect_target.redirect_uri
    # prompt=consent: alice may have allowed this client before (remembered consent)
    with AuthorizationFlow(live_gateway, confidential, uri, SCOPES, prompt="consent") as flow:
        flow.decide(flow.login(alice), "allow")
        flow.verifier = "a" * 64  # not the one the challenge was made from
        with pytest.raises(OAuthError) as failed:
            flow.fetch_token()
    assert failed.value.error == "invalid_grant"


def test_denied_consent_redirects_with_access_denied(
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    confidential: dict[str, Any],
    alice: str,
) -> None:
    uri = redirect_target.redirect_uri
    with AuthorizationFlow(live_gateway, confidential, uri, SCOPES, prompt="consent") as flow:
        back = flow.decide(flow.login(alice), "deny")
    assert back["error"] == "access_denied"
    assert back["state"] == flow.state
    assert back["iss"] == live_gateway.base_url
    assert "code" not in back


# --- RFC 9068 tokens, verified offline against the published JWKS ----------------------------


def test_user_token_verifies_with_pyjwkclient(
    live_gateway: LiveGateway, confidential: dict[str, Any], alice: str
) -> None:
    before = int(time.time())
    token = password_token(live_gateway, confidential, alice, scope=SCOPES)

    claims = verify_offline(live_gateway, token["access_token"], USER_CLAIMS)

    assert claims["iss"] == claims["aud"] == live_gateway.base_url
    assert claims["client_id"] == confidential["client_id"]
    assert claims["scope"] == SCOPES
    assert "email" not in claims
    assert claims["sub"] != alice  # a stable id, not the (changeable) email
    assert before <= claims["auth_time"] <= claims["iat"]
    assert claims["exp"] - claims["iat"] == token["expires_in"]


def test_client_token_verifies_with_pyjwkclient(
    live_gateway: LiveGateway, confidential: dict[str, Any]
) -> None:
    with oauth_client(confidential, scope="orders:read") as oauth:
        token = oauth.fetch_token(
            live_gateway.metadata()["token_endpoint"], grant_type="client_credentials"
        )
    assert "refresh_token" not in token  # RFC 6749 §4.4.3

    claims = verify_offline(live_gateway, token["access_token"], CLIENT_CLAIMS)

    assert claims["sub"] == claims["client_id"] == confidential["client_id"]
    assert claims["scope"] == "orders:read"
    assert "email" not in claims and "auth_time" not in claims
