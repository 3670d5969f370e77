"""``accounts.create_client`` for private_key_jwt clients: exactly one of a JWK Set of public
signing keys and an https ``jwks_uri``, neither for any other method, and no secret."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import accounts
from gateway.errors import InvalidInput
from gateway.storage import Storage
from tests.support.assertions import Signer, jwks

URI = "https://keys.example/jwks.json"


def create(storage: Storage, method: str, **keys: Any) -> accounts.NewClient:
    with storage.session() as session:
        return accounts.create_client(
            session, "Keys", [], ["client_credentials"], "", method, **keys
        )


def test_a_key_client_gets_no_secret_and_keeps_its_keys(storage: Storage) -> None:
    signer = Signer("ES256", "k1")
    made = create(storage, "private_key_jwt", jwks=jwks(signer))
    assert made.client_secret is None and made.client.client_secret_hash is None
    assert made.client.jwks == jwks(signer)
    by_uri = create(storage, "private_key_jwt", jwks_uri=URI)
    assert by_uri.client_secret is None and by_uri.client.jwks_uri == URI


@pytest.mark.parametrize(
    ("method", "keys", "message"),
    [
        pytest.param("private_key_jwt", {}, "needs one of --jwks and --jwks-uri", id="neither"),
        pytest.param(
            "private_key_jwt",
            {"jwks": {"keys": []}, "jwks_uri": URI},
            "needs one of",
            id="both",
        ),
        pytest.param(
            "client_secret_basic", {"jwks_uri": URI}, "private_key_jwt only", id="basic-uri"
        ),
        pytest.param("none", {"jwks": {"keys": []}}, "private_key_jwt only", id="public-jwks"),
        pytest.param(
            "private_key_jwt",
            {"jwks": {"keys": [Signer().jwk(private=True)]}},
            "private",
            id="private-key",
        ),
        pytest.param("private_key_jwt", {"jwks": {"keys": []}}, "holds no key", id="empty"),
        pytest.param(
            "private_key_jwt",
            {"jwks_uri": "http://keys.example/jwks.json"},
            "https",
            id="http-uri",
        ),
        pytest.param(
            "private_key_jwt",
            {"jwks_uri": "http://127.0.0.1:8080/jwks.json"},
            "https",
            id="http-loopback-uri",
        ),
    ],
)
def test_refused(storage: Storage, method: str, keys: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        create(storage, method, **keys)
