"""Client ID Metadata Documents of private_key_jwt clients (gateway/issuer/client_documents.py):
a document with inline ``jwks`` or a ``jwks_uri`` on its own host, and such a client through the
code flow, authenticating at the token endpoint with assertions, against a real https server."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, RegistrationConfig
from gateway.issuer.client_documents import DocumentRefused, read_document
from gateway.models import User
from gateway.storage import Storage
from tests.support.app import ISSUER, Registered
from tests.support.assertions import Signer, form, jwks
from tests.support.documents import Answer, DocumentServer, ca_file, serving
from tests.support.issuer import REDIRECT_URI, TOKEN, get_code, oauth_error, pkce_pair, tokens

URL = "https://agent.example/client.json"
SCOPES = frozenset({"orders:read"})
PATH = "/client.json"
KEYS = "/keys.json"


def document(url: str, **changes: Any) -> dict[str, Any]:
    made = {
        "client_id": url,
        "client_name": "Keyed Agent",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": "orders:read",
    }
    made.update(changes)
    return {k: v for k, v in made.items() if v is not None}


def read(**changes: Any) -> Any:
    return read_document(URL, json.dumps(document(URL, **changes)).encode(), SCOPES)


def test_inline_jwks_and_a_jwks_uri_on_the_documents_host_are_taken() -> None:
    keys = jwks(Signer("ES256", "k1"))
    inline = read(jwks=keys)
    assert (inline.auth_method, inline.jwks, inline.jwks_uri) == ("private_key_jwt", keys, None)
    assert inline.columns()["token_endpoint_auth_method"] == "private_key_jwt"
    by_uri = read(jwks_uri="https://agent.example/keys.json")
    assert (by_uri.jwks, by_uri.jwks_uri) == (None, "https://agent.example/keys.json")
    public = read(token_endpoint_auth_method="none", jwks=keys)
    assert (public.auth_method, public.jwks) == ("none", None)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param(
            {"jwks": {"keys": []}, "jwks_uri": "https://agent.example/k"},
            "without exactly one of jwks and jwks_uri",
            id="both",
        ),
        pytest.param(
            {"jwks_uri": "https://elsewhere.example/keys.json"},
            "has a jwks_uri on another host than the document's",
            id="other-host",
        ),
        pytest.param(
            {"jwks_uri": "http://agent.example/keys.json"},
            "has a jwks_uri that is not a usable https URL",
            id="http",
        ),
        pytest.param({"jwks_uri": 7}, "has a jwks_uri that is not a usable https URL", id="number"),
        pytest.param(
            {"jwks": {"keys": [Signer().jwk(private=True)]}},
            "has jwks that holds a private or symmetric key",
            id="private-key",
        ),
    ],
)
def test_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(DocumentRefused, match=reason):
        read(**changes)


# --- the code flow ----------------------------------------------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[DocumentServer]:
    with serving(ca) as running:
        yield running


@pytest.fixture
def app_client(
    config: Config, storage: Storage, ca: trustme.CA, tmp_path: Path
) -> Iterator[TestClient]:
    registration = RegistrationConfig(
        metadata_documents=True,
        allow_private_addresses=True,
        ca_file=str(ca_file(ca, tmp_path / "ca")),
        allowed_scopes=tuple(sorted(SCOPES)),
    )
    app = create_app(dataclasses.replace(config, registration=registration))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        yield client


@pytest.mark.parametrize("where", ["inline", "jwks_uri"])
def test_a_keyed_document_client_through_the_code_flow(
    app_client: TestClient, server: DocumentServer, user: User, where: str
) -> None:
    signer = Signer("ES256", "k1")
    url = server.url(PATH)
    if where == "inline":
        server.answers[PATH] = Answer.json(document(url, jwks=jwks(signer)))
    else:
        server.answers[KEYS] = Answer.json(jwks(signer))
        server.answers[PATH] = Answer.json(document(url, jwks_uri=server.url(KEYS)))
    verifier, challenge = pkce_pair()
    code = get_code(app_client, Registered(url, None, None), user, challenge=challenge)  # type: ignore[arg-type]
    redeem = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    # its client_id alone (a public client's way) is not enough any more
    oauth_error(app_client.post(TOKEN, data={**redeem, "client_id": url}), 401, "invalid_client")
    issued = tokens(app_client.post(TOKEN, data=form(signer.assertion(url), **redeem)))
    refreshed = app_client.post(
        TOKEN,
        data=form(
            signer.assertion(url), grant_type="refresh_token", refresh_token=issued["refresh_token"]
        ),
    )
    tokens(refreshed)
    stranger = Signer("ES256", "k1").assertion(url)
    refused = app_client.post(
        TOKEN, data=form(stranger, grant_type="refresh_token", refresh_token="x")
    )
    oauth_error(refused, 401, "invalid_client")
    assert server.hits[KEYS] == (1 if where == "jwks_uri" else 0)
