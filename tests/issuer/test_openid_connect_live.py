"""OpenID Connect against a live ``gateway serve``, as a relying party does it: endpoints from
Discovery, the code flow by Authlib's ``OAuth2Client`` through the real login and consent forms,
the ID token verified by PyJWT against the published JWKS, then UserInfo and a refresh."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import pytest
from authlib.common.security import generate_token

from tests.support.keyutil import at_hash
from tests.support.live import PASSWORD, LiveGateway, RedirectTarget
from tests.support.oauth import USER_CLAIMS, AuthorizationFlow, verify_offline

pytestmark = pytest.mark.live

SCOPES = "openid profile email orders:read"
ID_TOKEN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid")


def discovery(gateway: LiveGateway) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/.well-known/openid-configuration")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def verify_id_token(
    gateway: LiveGateway, id_token: str, client_id: str, access_token: str
) -> dict[str, Any]:
    """§3.1.3.7 and §3.2.2.9, with keys from the discovery document's ``jwks_uri`` only."""
    config = discovery(gateway)
    header = jwt.get_unverified_header(id_token)
    assert header["typ"] == "JWT"
    assert header["alg"] in config["id_token_signing_alg_values_supported"]
    key = jwt.PyJWKClient(config["jwks_uri"], cache_jwk_set=False).get_signing_key_from_jwt(
        id_token
    )
    claims: dict[str, Any] = jwt.decode(
        id_token,
        key,
        algorithms=config["id_token_signing_alg_values_supported"],
        audience=client_id,
        issuer=config["issuer"],
        options={"require": [c for c in ID_TOKEN_CLAIMS if c != "nonce"]},
    )
    assert claims["at_hash"] == at_hash(access_token, header["alg"])
    return claims


@pytest.fixture(scope="module")
def relying_party(live_gateway: LiveGateway, redirect_target: RedirectTarget) -> dict[str, Any]:
    return live_gateway.create_client(
        "Orders web app (OIDC)",
        grant_types=("authorization_code", "refresh_token"),
        scope=SCOPES,
        redirect_uris=(redirect_target.redirect_uri,),
    )


def test_code_flow_with_openid(
    live_gateway: LiveGateway,
    redirect_target: RedirectTarget,
    relying_party: dict[str, Any],
    email: str,
) -> None:
    args = ("user", "create", "--email", email, "--name", "Olive Idsen", "--password-stdin")
    user = json.loads(live_gateway.cli(*args, "--json", stdin=PASSWORD + "\n"))
    config = discovery(live_gateway)
    assert config["issuer"] == live_gateway.base_url
    assert {"openid", "profile", "email"} <= set(config["scopes_supported"])
    nonce = generate_token(32)
    uri = redirect_target.redirect_uri

    with AuthorizationFlow(live_gateway, relying_party, uri, SCOPES, nonce=nonce) as flow:
        assert flow.metadata["authorization_endpoint"] == config["authorization_endpoint"]
        back = flow.decide(flow.login(email), "allow")
        assert (back["state"], back["iss"]) == (flow.state, live_gateway.base_url)
        token = flow.fetch_token()

        claims = verify_id_token(
            live_gateway, token["id_token"], relying_party["client_id"], token["access_token"]
        )
        access = verify_offline(live_gateway, token["access_token"], USER_CLAIMS)
        assert claims["nonce"] == nonce
        assert claims["sub"] == access["sub"] == user["id"]
        assert claims["auth_time"] == access["auth_time"]
        assert (claims["email"], claims["name"]) == (email, "Olive Idsen")

        # UserInfo, through Authlib's client holding the access token
        info = flow.oauth.get(config["userinfo_endpoint"])
        assert info.status_code == 200, info.text
        assert info.json() == {
            "sub": user["id"],
            "email": email,
            "email_verified": False,
            "name": "Olive Idsen",
        }

        # the ID token is no bearer token
        refused = httpx.get(
            config["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['id_token']}"}
        )
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]

        # §12.2: a refresh brings a fresh ID token of the same login
        again = flow.oauth.refresh_token(config["token_endpoint"])
        fresh = verify_id_token(
            live_gateway, again["id_token"], relying_party["client_id"], again["access_token"]
        )
        assert (fresh["sub"], fresh["auth_time"], fresh["sid"]) == (
            claims["sub"],
            claims["auth_time"],
            claims["sid"],
        )
        assert "nonce" not in fresh
