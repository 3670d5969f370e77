"""RFC 9126 §6 in dynamic registration (RFC 7591, RFC 7592): a client registers
``require_pushed_authorization_requests``, it is stored as the client's ``require_par`` and
sent back, and its plain authorization requests are then refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.config import Config, RegistrationConfig
from gateway.models import Client
from gateway.storage import Storage
from tests.support.issuer import AUTHORIZE, oauth_error, pkce_pair, running

REGISTER = "/oauth/register"
REDIRECT = "http://127.0.0.1/callback"


@pytest.fixture
def registrar(config: Config, storage: Storage) -> Iterator[TestClient]:
    registration = RegistrationConfig(dynamic="open")
    with running(dataclasses.replace(config, registration=registration)) as test_client:
        yield test_client


def metadata(**fields: Any) -> dict[str, Any]:
    return {
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        **fields,
    }


def stored(storage: Storage, client_id: str) -> bool:
    with storage.session() as session:
        return bool(
            session.scalar(sa.select(Client.require_par).where(Client.client_id == client_id))
        )


def test_a_client_registers_that_its_requests_must_be_pushed(registrar, storage):
    response = registrar.post(REGISTER, json=metadata(require_pushed_authorization_requests=True))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["require_pushed_authorization_requests"] is True
    assert stored(storage, body["client_id"])
    _, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": body["client_id"],
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = registrar.get(AUTHORIZE + "?" + urlencode(query))
    assert page.status_code == 400 and "location" not in page.headers
    assert "pushed authorization request" in page.text
    pushed = registrar.post("/oauth/par", data=query)
    assert pushed.status_code == 201, pushed.text


@pytest.mark.parametrize("value", [False, None])
def test_false_or_omitted_is_the_default(registrar, storage, value):
    response = registrar.post(REGISTER, json=metadata(require_pushed_authorization_requests=value))
    body = response.json()
    assert "require_pushed_authorization_requests" not in body  # omitted: false
    assert not stored(storage, body["client_id"])


@pytest.mark.parametrize("value", ["true", 1, [], {}])
def test_anything_but_a_boolean_is_refused(registrar, value):
    response = registrar.post(REGISTER, json=metadata(require_pushed_authorization_requests=value))
    body = oauth_error(response, 400, "invalid_client_metadata")
    assert "require_pushed_authorization_requests" in body["error_description"]


def test_an_update_sets_and_clears_it(registrar, storage):
    body = registrar.post(REGISTER, json=metadata()).json()
    path = urlsplit(body["registration_client_uri"]).path
    token = body["registration_access_token"]
    for value in (True, False):
        update = metadata(client_id=body["client_id"], require_pushed_authorization_requests=value)
        response = registrar.put(path, json=update, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        answer = response.json()
        token = answer["registration_access_token"]
        assert answer.get("require_pushed_authorization_requests", False) is value
        assert stored(storage, body["client_id"]) is value
