"""``dpop_bound_access_tokens`` (RFC 9449 §5.2) in dynamic registration (RFC 7591, RFC 7592):
a boolean, stored as the client's ``require_dpop``, returned, replaced by an update; and the
client it marks gets no token without a proof."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.config import Config, RegistrationConfig
from gateway.models import Client
from gateway.storage import Storage
from tests.support.app import Registered
from tests.support.dpop import ProofKey, with_proof
from tests.support.issuer import oauth_error, running, tokens

REGISTER = "/oauth/register"


@pytest.fixture
def registrar(config: Config, storage: Storage) -> Iterator[TestClient]:
    registration = RegistrationConfig(dynamic="open")
    with running(dataclasses.replace(config, registration=registration)) as test_client:
        yield test_client


def register(registrar: TestClient, **metadata: Any) -> dict[str, Any]:
    response = registrar.post(REGISTER, json={"grant_types": ["client_credentials"], **metadata})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def require_dpop(storage: Storage, client_id: str) -> bool:
    with storage.session() as session:
        stored = session.scalar(sa.select(Client.require_dpop).where(Client.client_id == client_id))
    assert stored is not None
    return stored


def as_registered(storage: Storage, body: dict[str, Any]) -> Registered:
    with storage.session() as session:
        row = session.scalar(sa.select(Client).where(Client.client_id == body["client_id"]))
    assert row is not None
    return Registered(body["client_id"], body["client_secret"], row)


def test_dpop_bound_access_tokens_is_stored_and_returned(
    registrar: TestClient, storage: Storage
) -> None:
    body = register(registrar, dpop_bound_access_tokens=True)
    assert body["dpop_bound_access_tokens"] is True
    assert require_dpop(storage, body["client_id"]) is True


@pytest.mark.parametrize("metadata", [{}, {"dpop_bound_access_tokens": None}])
def test_omitted_it_is_false(
    registrar: TestClient, storage: Storage, metadata: dict[str, Any]
) -> None:
    body = register(registrar, **metadata)
    assert body["dpop_bound_access_tokens"] is False
    assert require_dpop(storage, body["client_id"]) is False


@pytest.mark.parametrize("value", ["true", 1, 0, [], {}])
def test_a_value_that_is_not_a_boolean_is_invalid_client_metadata(
    registrar: TestClient, value: Any
) -> None:
    response = registrar.post(
        REGISTER, json={"grant_types": ["client_credentials"], "dpop_bound_access_tokens": value}
    )
    body = oauth_error(response, 400, "invalid_client_metadata")
    assert "dpop_bound_access_tokens" in body["error_description"]


def test_a_registered_client_that_asked_for_it_needs_a_proof(
    registrar: TestClient, storage: Storage
) -> None:
    client = as_registered(storage, register(registrar, dpop_bound_access_tokens=True))
    oauth_error(
        with_proof(registrar, client, None, grant_type="client_credentials"), 400, "invalid_request"
    )
    key = ProofKey()
    body = tokens(with_proof(registrar, client, key, grant_type="client_credentials"))
    assert body["token_type"] == "DPoP"


def test_an_update_replaces_it(registrar: TestClient, storage: Storage) -> None:
    body = register(registrar, dpop_bound_access_tokens=True)
    update = {
        "client_id": body["client_id"],
        "grant_types": ["client_credentials"],
        "dpop_bound_access_tokens": False,
    }
    response = registrar.put(
        body["registration_client_uri"].removeprefix("http://127.0.0.1:8000"),
        json=update,
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["dpop_bound_access_tokens"] is False
    assert require_dpop(storage, body["client_id"]) is False
