"""A DPoP proof sent with a pushed authorization request (RFC 9449 §10.1): it binds the code
as ``dpop_jkt`` would; a ``dpop_jkt`` naming another key is refused; a bad proof is refused
before anything is stored."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.models import PushedRequest, User
from gateway.storage import Storage
from tests.support.app import ISSUER, Registered
from tests.support.dpop import ProofKey, with_proof
from tests.support.issuer import (
    REDIRECT_URI,
    consent,
    decode,
    oauth_error,
    pkce_pair,
    redirect_params,
    tokens,
)
from tests.support.par import PAR, authorize_pushed, continue_at, signed_in_at

PAR_URL = f"{ISSUER}{PAR}"


def push_with_proof(
    client: TestClient, registered: Registered, proof: str, **extra: str
) -> tuple[object, str]:
    verifier, challenge = pkce_pair()
    form = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "orders:read",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return client.post(PAR, data=form, headers={"DPoP": proof}), verifier


def stored(storage: Storage) -> list[PushedRequest]:
    with storage.session() as session:
        return list(session.scalars(sa.select(PushedRequest)))


def test_the_proof_binds_the_code_to_its_key(
    client: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    key = ProofKey()
    response, verifier = push_with_proof(client, public, key.proof(PAR_URL))
    assert response.status_code == 201, response.text
    assert stored(storage)[0].parameters["dpop_jkt"] == [key.jkt]
    request_uri = response.json()["request_uri"]
    continuation = continue_at(client, authorize_pushed(public, request_uri))
    signed_in_at(client, continuation, user.email)
    code = redirect_params(consent(client, continuation))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
    }
    oauth_error(with_proof(client, public, None, **form), 400, "invalid_grant")
    oauth_error(with_proof(client, public, ProofKey(), **form), 400, "invalid_grant")
    issued = tokens(with_proof(client, public, key, **form))
    assert issued["token_type"] == "DPoP"
    assert decode(client, issued["access_token"])["cnf"] == {"jkt": key.jkt}


def test_a_dpop_jkt_naming_another_key_is_refused(
    client: TestClient, storage: Storage, public: Registered
) -> None:
    key = ProofKey()
    response, _ = push_with_proof(client, public, key.proof(PAR_URL), dpop_jkt=ProofKey().jkt)
    oauth_error(response, 400, "invalid_request")
    assert stored(storage) == []
    response, _ = push_with_proof(client, public, key.proof(PAR_URL), dpop_jkt=key.jkt)
    assert response.status_code == 201, response.text


def test_a_proof_for_another_url_is_refused(
    client: TestClient, storage: Storage, public: Registered
) -> None:
    response, _ = push_with_proof(client, public, ProofKey().proof(f"{ISSUER}/oauth/token"))
    oauth_error(response, 400, "invalid_dpop_proof")
    assert stored(storage) == []
