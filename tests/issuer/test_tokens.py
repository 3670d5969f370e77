"""RFC 9068 JWT access tokens, checked by a third party: PyJWT verifies each token against the
JWKS the gateway serves, once per signing algorithm the gateway supports."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.app import ISSUER, make_client, with_tokens
from tests.support.issuer import (
    decode,
    get_code,
    header,
    password_grant,
    running,
    token_request,
    tokens,
)
from tests.support.keyutil import thumbprint_of_pem


@pytest.fixture(params=["RS256", "ES256", "EdDSA"])
def config(request, config):
    return dataclasses.replace(
        config, keys=dataclasses.replace(config.keys, algorithm=request.param)
    )


def test_header(app, client, config, user, confidential):
    access = tokens(password_grant(client, confidential))["access_token"]
    jose = header(access)
    active = app.gateway.keyring.active_key
    assert jose["alg"] == config.keys.algorithm
    assert jose["typ"] == "at+jwt"
    assert jose["kid"] == active.kid
    assert jose["kid"] == thumbprint_of_pem(config.keys_dir / f"{active.kid}.pem")
    assert set(jose) == {"alg", "kid", "typ"}


def test_user_token_claims(client, config, user, confidential):
    response = password_grant(client, confidential, scope="orders:read profile")
    issued = tokens(response)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    claims = decode(client, issued["access_token"])
    assert claims["iss"] == ISSUER
    assert claims["sub"] == user.id and isinstance(claims["sub"], str)
    assert claims["aud"] == ISSUER  # no audience configured: the issuer
    assert claims["exp"] - claims["iat"] == config.tokens.access_token_ttl == issued["expires_in"]
    assert claims["client_id"] == confidential.client_id
    assert claims["scope"] == "orders:read profile"
    assert isinstance(claims["sid"], str) and claims["sid"]
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert claims["email"] == user.email
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= claims["iat"]


def test_code_flow_token_claims(client, user, confidential):
    code = get_code(client, confidential, user, scope="profile")
    issued = tokens(
        token_request(
            client,
            confidential,
            grant_type="authorization_code",
            code=code,
            redirect_uri="http://127.0.0.1:9999/callback",
        )
    )
    claims = decode(client, issued["access_token"])
    assert (claims["sub"], claims["email"], claims["scope"]) == (user.id, user.email, "profile")
    assert "auth_time" in claims and "sid" in claims


@pytest.mark.parametrize(
    ("scope", "named"),
    [
        pytest.param("orders:read", False, id="no-email-scope"),
        pytest.param("orders:read orders:write", False, id="api-scopes"),
        pytest.param("profile", True, id="profile"),
        pytest.param("orders:read email", True, id="email"),
    ],
)
def test_a_user_token_names_the_address_only_for_email_or_profile(
    client, storage, user, scope, named
):
    """RFC 9068 §6: the client can read its access token, so the user's e-mail address is in
    it only when the grant includes it; introspection's ``username`` follows the token."""
    registered = make_client(storage, scope="orders:read orders:write profile email")
    claims = decode(client, tokens(password_grant(client, registered, scope=scope))["access_token"])
    assert ("email" in claims) is named
    assert "auth_time" in claims  # a user's token either way


def test_client_token_claims(client, confidential):
    access = tokens(token_request(client, confidential, grant_type="client_credentials"))
    claims = decode(client, access["access_token"])
    assert claims["sub"] == confidential.client_id
    assert "email" not in claims and "auth_time" not in claims


def test_every_token_has_its_own_jti_and_sid(client, user, confidential):
    issued = [tokens(password_grant(client, confidential))["access_token"] for _ in range(3)]
    claims = [decode(client, t) for t in issued]
    assert len({c["jti"] for c in claims}) == 3
    assert len({c["sid"] for c in claims}) == 3


def test_configured_audience(config, storage, user, confidential):
    with running(with_tokens(config, audience="https://api.example.com")) as client:
        access = tokens(password_grant(client, confidential))["access_token"]
        assert decode(client, access, audience="https://api.example.com")["aud"] == (
            "https://api.example.com"
        )
