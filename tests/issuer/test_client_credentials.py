"""The client credentials grant (RFC 6749 §4.4): confidential clients only, the client is the
subject, and no refresh token (§4.4.3)."""

from __future__ import annotations

import pytest

from gateway import accounts
from gateway.errors import InvalidInput
from tests.support.issuer import decode, oauth_error, token_request, tokens


def test_client_credentials_token(client, confidential):
    response = token_request(client, confidential, grant_type="client_credentials")
    issued = tokens(response)
    assert response.headers["cache-control"] == "no-store"
    assert "refresh_token" not in issued
    assert issued["scope"] == confidential.row.scope
    claims = decode(client, issued["access_token"])
    assert claims["sub"] == confidential.client_id
    assert claims["client_id"] == confidential.client_id
    assert isinstance(claims["sid"], str) and claims["sid"]
    assert "email" not in claims and "auth_time" not in claims


def test_scope_can_be_narrowed(client, confidential):
    response = token_request(client, confidential, grant_type="client_credentials", scope="profile")
    assert tokens(response)["scope"] == "profile"


def test_scope_outside_the_clients_is_refused(client, confidential):
    response = token_request(client, confidential, grant_type="client_credentials", scope="admin")
    oauth_error(response, 400, "invalid_scope")


def test_post_authentication_works(client, poster):
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": poster.client_id,
            "client_secret": poster.client_secret,
        },
    )
    assert decode(client, tokens(response)["access_token"])["sub"] == poster.client_id


def test_public_client_is_refused(client, public):
    response = token_request(client, public, grant_type="client_credentials")
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")


def test_public_client_cannot_be_registered_for_it(storage):
    with storage.session() as session, pytest.raises(InvalidInput, match="public client"):
        accounts.create_client(session, "x", [], ["client_credentials"], "", "none")
