"""Signing-key rotation on a live server: ``gateway key rotate`` and ``key retire`` run as
separate processes while ``gateway serve`` keeps issuing and validating tokens."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from tests.support.live import LiveGateway, rotate, wait_until
from tests.support.oauth import CLIENT_CLAIMS, introspect, oauth_client, verify_offline

pytestmark = pytest.mark.live


@pytest.fixture
def service(isolated_gateway: LiveGateway) -> dict[str, Any]:
    """A client that gets tokens for itself and may introspect them."""
    return isolated_gateway.create_client(
        "Batch job", grant_types=("client_credentials",), scope="jobs", introspect=True
    )


def client_token(gateway: LiveGateway, client: dict[str, Any]) -> str:
    with oauth_client(client) as oauth:
        token = oauth.fetch_token(
            gateway.metadata()["token_endpoint"], grant_type="client_credentials"
        )
    return str(token["access_token"])


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def key_status(gateway: LiveGateway) -> dict[str, str]:
    return {k["kid"]: k["status"] for k in json.loads(gateway.cli("key", "list", "--json"))}


def test_rotate_then_retire(isolated_gateway: LiveGateway, service: dict[str, Any]) -> None:
    gateway = isolated_gateway
    token_a = client_token(gateway, service)
    old_kid = kid_of(token_a)
    # A verifier that caches the key set and refetches it for an unknown kid. (PyJWT's default
    # 30 s refetch cooldown would refuse token B: what activation_delay > 0 is for, below.)
    verifier = jwt.PyJWKClient(gateway.metadata()["jwks_uri"], cooldown_duration=0)
    verify_offline(gateway, token_a, CLIENT_CLAIMS, verifier)

    new_kid = rotate(gateway)
    assert new_kid != old_kid
    wait_until(lambda: new_kid in gateway.jwks_kids(), "the new key in the JWKS")

    token_b = client_token(gateway, service)
    assert kid_of(token_b) == new_kid
    verify_offline(gateway, token_b, CLIENT_CLAIMS, verifier)  # unknown kid: refetched
    # the old key is still published: what it signed stays valid
    assert introspect(gateway, service, token_a)["active"] is True
    verify_offline(gateway, token_a, CLIENT_CLAIMS)

    gateway.cli("key", "retire", "--", old_kid)  # a kid may start with "-"
    wait_until(lambda: old_kid not in gateway.jwks_kids(), "the old key gone from the JWKS")

    assert introspect(gateway, service, token_a) == {"active": False}
    with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
        verify_offline(gateway, token_a, CLIENT_CLAIMS)
    assert introspect(gateway, service, token_b)["active"] is True
    verify_offline(gateway, token_b, CLIENT_CLAIMS)
    assert gateway.jwks_kids() == {new_kid}

    refused = gateway.cli("key", "retire", "--", new_kid, status=2)
    assert "cannot retire the only key" in refused


def test_rotated_key_is_published_before_it_signs(
    isolated_gateway: LiveGateway, service: dict[str, Any]
) -> None:
    gateway = isolated_gateway
    old_kid = kid_of(client_token(gateway, service))
    delayed = gateway.write_config("delayed.toml", activation_delay=3600)

    new_kid = rotate(gateway, config=delayed)
    wait_until(lambda: new_kid in gateway.jwks_kids(), "the new key in the JWKS")

    assert gateway.jwks_kids() == {old_kid, new_kid}
    assert key_status(gateway) == {old_kid: "active", new_kid: "pending"}
    token = client_token(gateway, service)
    assert kid_of(token) == old_kid  # published now, signing only after the delay
    assert introspect(gateway, service, token)["active"] is True
    # a verifier fetching the set now already holds the key that will sign next
    verifier = jwt.PyJWKClient(gateway.metadata()["jwks_uri"])
    verify_offline(gateway, token, CLIENT_CLAIMS, verifier)
    assert new_kid in {key.key_id for key in verifier.get_signing_keys()}
