"""``dpop_jkt`` at the authorization endpoint (RFC 9449 §10): the code is bound to the key it
names, redeemed only with a proof by that key; a value that cannot be a thumbprint is
``invalid_request`` at the authorization endpoint."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.models import AuthorizationCode, User, sha256
from gateway.storage import Storage
from tests.support.app import Registered
from tests.support.dpop import ProofKey, with_proof
from tests.support.issuer import (
    authorize_url,
    decode,
    get_code,
    oauth_error,
    pkce_pair,
    redirect_params,
    tokens,
)

REDIRECT = "http://127.0.0.1:9999/callback"


def bound_code(
    client: TestClient, registered: Registered, user: User, jkt: str
) -> tuple[str, dict[str, str]]:
    verifier, challenge = pkce_pair()
    code = get_code(client, registered, user, challenge=challenge, dpop_jkt=jkt)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
    }
    return code, form


def test_the_code_keeps_the_thumbprint(
    client: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    key = ProofKey()
    code, _ = bound_code(client, public, user, key.jkt)
    with storage.session() as session:
        row = session.scalar(
            sa.select(AuthorizationCode).where(AuthorizationCode.code_hash == sha256(code))
        )
    assert row is not None and row.dpop_jkt == key.jkt


@pytest.mark.parametrize("holder", ["public", "confidential"])
def test_a_bound_code_is_redeemed_only_with_a_proof_by_its_key(
    client: TestClient, user: User, holder: str, request: pytest.FixtureRequest
) -> None:
    registered: Registered = request.getfixturevalue(holder)
    key = ProofKey()
    _, form = bound_code(client, registered, user, key.jkt)
    oauth_error(with_proof(client, registered, None, **form), 400, "invalid_grant")
    oauth_error(with_proof(client, registered, ProofKey(), **form), 400, "invalid_grant")
    # refused before anything was written: the code is still good for the key's holder
    body = tokens(with_proof(client, registered, key, **form))
    assert body["token_type"] == "DPoP"
    assert decode(client, body["access_token"])["cnf"] == {"jkt": key.jkt}


def test_a_code_without_dpop_jkt_takes_any_proof_or_none(
    client: TestClient, public: Registered, user: User
) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(client, public, user, challenge=challenge)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
    }
    assert tokens(with_proof(client, public, None, **form))["token_type"] == "Bearer"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("abc", id="short"),
        pytest.param("A" * 44, id="long"),
        pytest.param("A" * 42 + "+", id="standard-base64"),
        pytest.param("A" * 42 + "=", id="padding"),
        pytest.param("A" * 42 + "B", id="not-canonical"),
        pytest.param("", id="empty"),
    ],
)
def test_a_dpop_jkt_that_cannot_be_a_thumbprint_is_invalid_request(
    client: TestClient, public: Registered, user: User, value: str
) -> None:
    _, challenge = pkce_pair()
    url = authorize_url(
        public, code_challenge=challenge, code_challenge_method="S256", dpop_jkt=value
    )
    params = redirect_params(client.get(url))  # before any page: back to the client
    assert params["error"] == "invalid_request"
    assert params["state"] == "xyz"
    assert "dpop_jkt" in params["error_description"]


def test_a_canonical_thumbprint_is_accepted(
    client: TestClient, public: Registered, user: User
) -> None:
    _, challenge = pkce_pair()
    get_code(client, public, user, challenge=challenge, dpop_jkt="A" * 42 + "E")
