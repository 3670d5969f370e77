"""Dynamic registration (RFC 7591) of private_key_jwt clients: ``jwks`` or ``jwks_uri``, never
both; no secret; the registered keys authenticate the client at once; an update (RFC 7592) may
replace the keys but not turn the client into one with a secret."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, RegistrationConfig
from gateway.storage import Storage
from tests.support.app import ISSUER
from tests.support.assertions import Signer, form, jwks
from tests.support.issuer import TOKEN, tokens

REGISTER = "/oauth/register"


@pytest.fixture
def registrar(config: Config, storage: Storage) -> Iterator[TestClient]:
    registration = RegistrationConfig(dynamic="open")
    app = create_app(dataclasses.replace(config, registration=registration))
    with TestClient(app, base_url=ISSUER) as client:
        yield client


def machine(**metadata: Any) -> dict[str, Any]:
    return {
        "client_name": "Robot",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "token_endpoint_auth_method": "private_key_jwt",
        **metadata,
    }


def test_a_key_client_registers_and_authenticates(registrar: TestClient) -> None:
    signer = Signer("ES256", "k1")
    response = registrar.post(REGISTER, json=machine(jwks=jwks(signer)))
    assert response.status_code == 201, response.text
    body = response.json()
    assert "client_secret" not in body
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["jwks"] == jwks(signer)
    issued = registrar.post(
        TOKEN, data=form(signer.assertion(body["client_id"]), grant_type="client_credentials")
    )
    tokens(issued)


def test_a_jwks_uri_is_registered(registrar: TestClient) -> None:
    uri = "https://robot.example/jwks.json"
    response = registrar.post(REGISTER, json=machine(jwks_uri=uri))
    assert response.status_code == 201, response.text
    assert response.json()["jwks_uri"] == uri


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(machine(), id="no-keys"),
        pytest.param(
            machine(jwks={"keys": []}, jwks_uri="https://robot.example/jwks.json"), id="both"
        ),
        pytest.param(machine(jwks={"keys": [Signer().jwk(private=True)]}), id="private-key"),
        pytest.param(machine(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), id="symmetric"),
        pytest.param(machine(jwks_uri="http://robot.example/jwks.json"), id="http-uri"),
        pytest.param(machine(jwks_uri=["https://robot.example/"]), id="uri-array"),
    ],
)
def test_refused(registrar: TestClient, metadata: dict[str, Any]) -> None:
    response = registrar.post(REGISTER, json=metadata)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"


def test_an_update_may_replace_the_keys_but_not_the_kind(registrar: TestClient) -> None:
    old, new = Signer("ES256", "k1"), Signer("ES256", "k2")
    body = registrar.post(REGISTER, json=machine(jwks=jwks(old))).json()
    path = body["registration_client_uri"][len(ISSUER) :]
    headers = {"Authorization": f"Bearer {body['registration_access_token']}"}
    to_secret = machine(
        client_id=body["client_id"], token_endpoint_auth_method="client_secret_basic"
    )
    refused = registrar.put(path, json=to_secret, headers=headers)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata"
    update = machine(client_id=body["client_id"], jwks=jwks(new))
    response = registrar.put(path, json=update, headers=headers)
    assert response.status_code == 200, response.text
    client_id = body["client_id"]
    stale = registrar.post(
        TOKEN, data=form(old.assertion(client_id), grant_type="client_credentials")
    )
    assert stale.status_code == 401
    fresh = registrar.post(
        TOKEN, data=form(new.assertion(client_id), grant_type="client_credentials")
    )
    tokens(fresh)
