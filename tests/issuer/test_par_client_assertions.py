"""A private_key_jwt client pushes its authorization request (RFC 9126 §2: "the client uses
the same authentication method" as at the token endpoint, and the pushed authorization request
endpoint's URL is a valid audience there, and only there)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from gateway.issuer.clientauth import FAILED
from gateway.storage import Storage
from tests.support.app import ISSUER
from tests.support.assertions import Signer, form, jwks, key_client
from tests.support.issuer import REDIRECT_URI, TOKEN, oauth_error
from tests.support.par import PAR, URN

PAR_URL = f"{ISSUER}{PAR}"


def push(client: TestClient, client_id: str, assertion: str) -> object:
    return client.post(
        PAR,
        data=form(
            assertion,
            client_id=client_id,
            response_type="code",
            redirect_uri=REDIRECT_URI,
            code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            code_challenge_method="S256",
            scope="orders:read",
        ),
    )


@pytest.mark.parametrize("aud", [ISSUER, PAR_URL], ids=["issuer", "par-endpoint"])
def test_a_push_authenticated_by_assertion(client: TestClient, storage: Storage, aud: str) -> None:
    signer = Signer("ES256", "k1")
    keyed = key_client(storage, keys=jwks(signer))
    response = push(client, keyed.client_id, signer.assertion(keyed.client_id, aud=aud))
    assert response.status_code == 201, response.text
    assert response.json()["request_uri"].startswith(URN)


def test_the_par_endpoints_url_is_no_audience_at_the_token_endpoint(
    client: TestClient, storage: Storage
) -> None:
    signer = Signer("ES256", "k1")
    keyed = key_client(storage, keys=jwks(signer))
    assertion = signer.assertion(keyed.client_id, aud=PAR_URL)
    response = client.post(TOKEN, data=form(assertion, grant_type="client_credentials"))
    assert oauth_error(response, 401, "invalid_client")["error_description"] == FAILED


def test_a_replayed_assertion_is_refused_at_the_push(client: TestClient, storage: Storage) -> None:
    signer = Signer("ES256", "k1")
    keyed = key_client(storage, keys=jwks(signer))
    assertion = signer.assertion(keyed.client_id)
    assert push(client, keyed.client_id, assertion).status_code == 201
    assert oauth_error(push(client, keyed.client_id, assertion), 401, "invalid_client")
