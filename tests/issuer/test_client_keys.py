"""The keys of private_key_jwt clients (gateway/issuer/client_keys.py): the JWK Set rules, and a
``jwks_uri`` fetched from a real https server on 127.0.0.1: kept, fetched again on an unknown
``kid`` at most once a minute per client, one fetch for any number of threads, a failure never
an exception."""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, RegistrationConfig
from gateway.issuer.client_keys import (
    MAX_JWKS_BYTES,
    ClientKeys,
    JwksRefused,
    jwks_uri_problem,
    read_jwks,
)
from gateway.issuer.fetch_cache import FetchCache
from gateway.issuer.fetcher import SafeFetcher
from gateway.models import Client
from gateway.storage import Storage
from tests.support.app import ISSUER
from tests.support.assertions import Signer, form, jwks, key_client
from tests.support.documents import Answer, DocumentServer, ca_file, serving
from tests.support.issuer import TOKEN, oauth_error

PATH = "/jwks.json"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[DocumentServer]:
    with serving(ca) as running:
        yield running


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path) -> str:
    return str(ca_file(ca, tmp_path / "ca"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(trusted: str, clock: Clock) -> ClientKeys:
    fetcher = SafeFetcher(ca_file=trusted, allow_private=True, max_bytes=MAX_JWKS_BYTES)
    return ClientKeys(fetcher, FetchCache(clock=clock))


@pytest.fixture
def signer() -> Signer:
    return Signer("ES256", "k1")


def publish(server: DocumentServer, *signers: Signer, **options: Any) -> str:
    server.answers[PATH] = Answer.json(jwks(*signers), **options)
    return server.url(PATH)


def uri_client(uri: str, client_id: str = "c1") -> Client:
    return Client(client_id=client_id, jwks_uri=uri, token_endpoint_auth_method="private_key_jwt")


# --- the JWK Set rules ------------------------------------------------------------------------


def _weak_rsa() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.support.assertions import b64url

    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    n = numbers.n.to_bytes(128, "big")
    return {"kty": "RSA", "kid": "weak", "n": b64url(n), "e": "AQAB"}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param([], "is not a JWK Set", id="not-an-object"),
        pytest.param({"keys": {}}, "is not a JWK Set", id="keys-not-a-list"),
        pytest.param({"keys": []}, "holds no key", id="empty"),
        pytest.param({"keys": ["x"]}, "not a JSON object", id="key-not-an-object"),
        pytest.param(lambda: {"keys": [Signer().jwk(private=True)]}, "private", id="private-key"),
        pytest.param({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "private", id="symmetric"),
        pytest.param(lambda: {"keys": [_weak_rsa()]}, "not a public signing key", id="weak-rsa"),
        pytest.param(
            lambda: {"keys": [Signer().jwk(use="enc")]}, "not a public signing key", id="enc"
        ),
        pytest.param(
            lambda: {"keys": [Signer().jwk(alg="RS256")]}, "not a public signing key", id="alg"
        ),
        pytest.param(
            lambda: {"keys": [Signer(kid=None).jwk(), Signer(kid=None).jwk()]},
            "each needs a kid",
            id="several-without-kid",
        ),
        pytest.param(
            lambda: {"keys": [Signer(kid="a").jwk(), Signer(kid="a").jwk()]},
            "each needs a kid",
            id="one-kid-twice",
        ),
        pytest.param(lambda: {"keys": [Signer(kid=7).jwk()]}, "kid is not a string", id="kid"),  # type: ignore[arg-type]
    ],
)
def test_registered_sets_are_held_strictly(document: Any, reason: str) -> None:
    with pytest.raises(JwksRefused, match=reason):
        read_jwks(document() if callable(document) else document, strict=True)


def test_a_fetched_set_skips_keys_it_cannot_use_but_never_takes_a_private_one() -> None:
    usable, other = Signer("ES256", "sig"), Signer("ES256", "enc")
    found = read_jwks({"keys": [other.jwk(use="enc"), usable.jwk(), {"kty": "X"}]}, strict=False)
    assert [k.kid for k in found.keys] == ["sig"]
    with pytest.raises(JwksRefused, match="private"):
        read_jwks({"keys": [usable.jwk(), other.jwk(private=True)]}, strict=False)


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        pytest.param("https://keys.example/jwks.json", True, id="https"),
        pytest.param("https://keys.example/jwks?client=1", True, id="query"),
        pytest.param("http://keys.example/jwks.json", False, id="http"),
        pytest.param("http://127.0.0.1/jwks.json", False, id="http-loopback"),
        pytest.param("https://user@keys.example/jwks.json", False, id="credentials"),
        pytest.param("https://keys.example/jwks.json#k", False, id="fragment"),
        pytest.param("https:///jwks.json", False, id="no-host"),
        pytest.param("https://keys.example/ jwks", False, id="space"),
        pytest.param("https://keys.example:99999/", False, id="bad-port"),
    ],
)
def test_jwks_uri_rules(uri: str, ok: bool) -> None:
    assert (jwks_uri_problem(uri) is None) is ok


# --- a jwks_uri -------------------------------------------------------------------------------


def test_fetched_once_and_kept(keys, server, signer) -> None:
    client = uri_client(publish(server, signer))
    assert keys.key(client, "ES256", "k1") is not None
    assert keys.key(client, "ES256", None) is not None
    assert keys.key(client, "RS256", "k1") is None  # the key is not one for RS256
    assert server.hits[PATH] == 1


def test_the_jwk_set_media_type_is_taken(keys, server, signer) -> None:
    client = uri_client(publish(server, signer, content_type="application/jwk-set+json"))
    assert keys.key(client, "ES256", "k1") is not None


def test_an_unknown_kid_flood_costs_one_fetch(keys, server, signer, clock) -> None:
    """Fifty threads at once, each with a made-up kid: one fetch, then one more a minute on."""
    client = uri_client(publish(server, signer))
    found: list[Any] = []
    barrier = threading.Barrier(50)

    def attempt() -> None:
        barrier.wait()
        found.append(keys.key(client, "ES256", secrets.token_urlsafe(8)))

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert found == [None] * 50
    assert server.hits[PATH] == 1
    clock.now += 59
    assert keys.key(client, "ES256", "made-up") is None
    assert server.hits[PATH] == 1
    clock.now += 1
    for _ in range(20):
        assert keys.key(client, "ES256", secrets.token_urlsafe(8)) is None
    assert server.hits[PATH] == 2


def test_a_rotated_key_is_picked_up_after_an_unknown_kid_within_the_minute_rule(
    keys, server, signer, clock
) -> None:
    client = uri_client(publish(server, signer))
    assert keys.key(client, "ES256", "k1") is not None
    rotated = Signer("ES256", "k2")
    publish(server, rotated)
    clock.now += 30
    assert keys.key(client, "ES256", "k2") is None  # fetched a moment ago: not again yet
    assert server.hits[PATH] == 1
    clock.now += 30
    assert keys.key(client, "ES256", "k2") is not None
    assert keys.key(client, "ES256", "k1") is None  # gone with the new set
    assert server.hits[PATH] == 2


def test_each_client_has_its_own_minute(keys, server, signer) -> None:
    uri = publish(server, signer)
    assert keys.key(uri_client(uri, "a"), "ES256", "k1") is not None
    assert keys.key(uri_client(uri, "b"), "ES256", "k1") is not None
    assert server.hits[PATH] == 2


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Answer(b"gone", 404, "text/plain"), id="404"),
        pytest.param(Answer(b"{", 200), id="not-json"),
        pytest.param(Answer.json({"keys": "x"}), id="not-a-set"),
        pytest.param(Answer(b"{}", 200, "text/html"), id="media-type"),
        pytest.param(
            Answer(b'{"keys": [], "pad": "' + b"x" * MAX_JWKS_BYTES + b'"}'), id="too-large"
        ),
        pytest.param(Answer(b"", 302, None, {"Location": "https://x.example/"}), id="redirect"),
    ],
)
def test_a_failure_is_no_key_and_kept_a_minute(keys, server, clock, answer) -> None:
    server.answers[PATH] = answer
    client = uri_client(server.url(PATH))
    assert keys.key(client, "ES256", "k1") is None
    assert keys.key(client, "ES256", "k2") is None
    assert server.hits[PATH] == 1
    clock.now += 61
    assert keys.key(client, "ES256", "k1") is None
    assert server.hits[PATH] == 2


def test_private_addresses_are_refused_unless_allowed(server, signer, trusted) -> None:
    strict = ClientKeys(SafeFetcher(ca_file=trusted, max_bytes=MAX_JWKS_BYTES))
    assert strict.key(uri_client(publish(server, signer)), "ES256", "k1") is None
    assert server.hits[PATH] == 0


# --- through the token endpoint ---------------------------------------------------------------


@pytest.fixture
def keyed_app(config: Config, storage: Storage, trusted: str) -> Iterator[TestClient]:
    registration = RegistrationConfig(allow_private_addresses=True, ca_file=trusted)
    app = create_app(dataclasses.replace(config, registration=registration))
    with TestClient(app, base_url=ISSUER) as client:
        yield client


def test_a_jwks_uri_client_at_the_token_endpoint(keyed_app, storage, server, signer) -> None:
    keyed = key_client(storage, jwks_uri=publish(server, signer))
    for _ in range(3):
        response = keyed_app.post(
            TOKEN, data=form(signer.assertion(keyed.client_id), grant_type="client_credentials")
        )
        assert response.status_code == 200, response.text
    for _ in range(10):  # made-up kids: refused, and no fetch each
        made_up = signer.assertion(keyed.client_id, header={"kid": secrets.token_urlsafe(8)})
        response = keyed_app.post(TOKEN, data=form(made_up, grant_type="client_credentials"))
        oauth_error(response, 401, "invalid_client")
    assert server.hits[PATH] == 1


def test_an_unreachable_jwks_uri_is_invalid_client(keyed_app, storage, server, signer) -> None:
    server.answers[PATH] = Answer(b"down", 503, "text/plain")
    keyed = key_client(storage, jwks_uri=server.url(PATH))
    response = keyed_app.post(
        TOKEN, data=form(signer.assertion(keyed.client_id), grant_type="client_credentials")
    )
    oauth_error(response, 401, "invalid_client")
