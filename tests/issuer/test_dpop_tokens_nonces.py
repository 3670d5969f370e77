"""Server nonces at the token endpoint (RFC 9449 §8, ``[dpop] nonces = true``): a proof without
a current nonce is 400 ``use_dpop_nonce`` with the nonce to use in ``DPoP-Nonce``; every
successful answer carries the next one. Nonces are derived from ``keys/session.key``, so two
replicas (two apps on one database and one keys folder) accept each other's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.config import Config, DpopConfig
from gateway.models import User
from gateway.storage import Storage
from tests.support.app import PASSWORD, Registered
from tests.support.dpop import TOKEN_URL, ProofKey, dpop_error
from tests.support.issuer import TOKEN, decode, running, tokens


def with_nonces(config: Config) -> Config:
    return dataclasses.replace(config, dpop=DpopConfig(nonces=True))


@pytest.fixture
def replicas(config: Config, storage: Storage) -> Iterator[tuple[TestClient, TestClient]]:
    """A and B: two apps with nonces on, one database, one keys folder."""
    with running(with_nonces(config)) as a, running(with_nonces(config)) as b:
        yield a, b


def ask(
    client: TestClient, registered: Registered, user: User, key: ProofKey, nonce: str | None
) -> httpx.Response:
    form = {"grant_type": "password", "username": user.email, "password": PASSWORD}
    proof = key.proof(TOKEN_URL, nonce=nonce)
    return client.post(TOKEN, data=form, auth=registered.auth, headers={"DPoP": proof})


def nonce_of(response: httpx.Response) -> str:
    nonce = response.headers.get("dpop-nonce")
    assert nonce, response.headers
    return nonce


def test_a_proof_without_a_nonce_is_told_the_nonce_to_use(
    replicas: tuple[TestClient, TestClient], confidential: Registered, user: User
) -> None:
    a, _ = replicas
    response = ask(a, confidential, user, ProofKey(), None)
    body = dpop_error(response, "use_dpop_nonce")
    assert body["error_description"] == "DPoP proof needs a current server nonce"
    assert len(nonce_of(response)) == 43


def test_a_wrong_nonce_is_told_the_right_one(
    replicas: tuple[TestClient, TestClient], confidential: Registered, user: User
) -> None:
    a, _ = replicas
    right = nonce_of(ask(a, confidential, user, ProofKey(), None))
    response = ask(a, confidential, user, ProofKey(), "A" * 43)
    dpop_error(response, "use_dpop_nonce")
    assert nonce_of(response) == right


def test_with_the_nonce_the_token_is_issued_with_the_next_nonce(
    replicas: tuple[TestClient, TestClient], confidential: Registered, user: User
) -> None:
    a, _ = replicas
    key = ProofKey()
    nonce = nonce_of(ask(a, confidential, user, key, None))
    response = ask(a, confidential, user, key, nonce)
    body = tokens(response)
    assert decode(a, body["access_token"])["cnf"] == {"jkt": key.jkt}
    assert nonce_of(response)  # the next one (the same within its step)


def test_a_nonce_from_one_replica_is_accepted_at_the_other(
    replicas: tuple[TestClient, TestClient], confidential: Registered, user: User
) -> None:
    a, b = replicas
    key = ProofKey()
    from_a = nonce_of(ask(a, confidential, user, key, None))
    at_b = ask(b, confidential, user, key, from_a)
    tokens(at_b)
    # and back: B's next nonce at A
    tokens(ask(a, confidential, user, key, nonce_of(at_b)))


def test_a_bearer_request_needs_no_nonce(
    replicas: tuple[TestClient, TestClient], confidential: Registered, user: User
) -> None:
    """Nonces are for proofs: a request without one is a bearer request, and its successful
    answer still hands out a nonce for later."""
    a, _ = replicas
    form = {"grant_type": "password", "username": user.email, "password": PASSWORD}
    response = a.post(TOKEN, data=form, auth=confidential.auth)
    assert tokens(response)["token_type"] == "Bearer"
    assert nonce_of(response)


def test_without_nonces_no_nonce_is_asked_or_given(
    client: TestClient, confidential: Registered, user: User
) -> None:
    response = ask(client, confidential, user, ProofKey(), None)
    tokens(response)
    assert "dpop-nonce" not in response.headers
