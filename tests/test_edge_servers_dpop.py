"""DPoP through the real edges (nginx ``auth_request``, Caddy ``forward_auth``), configured by
``gateway edge-config``: the proof's URL rebuilt from what the edge passes, a proof accepted
once and its replay refused, to the client."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt as pyjwt
import pytest

from gateway.keys import KeyRing
from tests.support.edges import Deployment
from tests.support.proofs import ProofKey

pytestmark = [pytest.mark.edge, pytest.mark.live]


@pytest.fixture(params=["nginx", "caddy"])
def edge(request: pytest.FixtureRequest) -> str:
    """The base URL of a real edge in front of the gateway."""
    return str(request.getfixturevalue(request.param))


def bound_token(deployment: Deployment, key: ProofKey) -> str:
    """The user's token as the gateway would issue it bound to ``key`` (RFC 9449 §6.1): its
    claims, a fresh ``jti`` and ``cnf.jkt``, signed by the gateway's own key."""
    claims = pyjwt.decode(deployment.user_token, options={"verify_signature": False})
    now = int(time.time())
    claims.update(jti=uuid.uuid4().hex, iat=now, exp=now + 300, cnf=key.cnf)
    return KeyRing(deployment.gateway.keys_dir).sign(claims)


def test_a_proof_is_accepted_once(edge: str, deployment: Deployment) -> None:
    key = ProofKey()
    token = bound_token(deployment, key)
    url = f"{edge}/orders/1"
    headers = key.headers(token, "GET", url)
    allowed = httpx.get(url, headers=headers)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["path"] == "/orders/1"
    replayed = httpx.get(url, headers=headers)
    assert replayed.status_code == 401
    # nginx answers its own body: the challenge is what reaches the client from every edge
    assert replayed.headers["www-authenticate"].startswith(
        'DPoP algs="ES256 EdDSA PS256 RS256", error="invalid_dpop_proof", '
        'error_description="DPoP proof was used before"'
    )


def test_the_proof_names_the_url_the_client_used(edge: str, deployment: Deployment) -> None:
    key = ProofKey()
    token = bound_token(deployment, key)
    url = f"{edge}/orders/1"
    for method, htu in (("POST", url), ("GET", url.replace("127.0.0.1", "localhost"))):
        response = httpx.get(url, headers=key.headers(token, method, htu))
        assert response.status_code == 401, (method, htu)
        challenge = response.headers["www-authenticate"]
        assert 'error_description="DPoP proof is for another request"' in challenge
    # the query is not part of it
    response = httpx.get(url + "?page=2", headers=key.headers(token, "GET", url))
    assert response.status_code == 200, response.text


def test_a_bound_token_as_bearer_is_refused(edge: str, deployment: Deployment) -> None:
    token = bound_token(deployment, ProofKey())
    response = httpx.get(f"{edge}/orders/1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_clients_port_does_not_change_the_url(edge: str, deployment: Deployment) -> None:
    """The edges set the scheme and port a proof's URL is rebuilt from, or remove a client's:
    a proof made for another port of the host must not pass here."""
    key = ProofKey()
    token = bound_token(deployment, key)
    url = f"{edge}/orders/1"
    elsewhere = "http://127.0.0.1:1/orders/1"
    # a Host without a port (as for a default one), and a port of the client's choosing
    headers = {**key.headers(token, "GET", elsewhere), "X-Forwarded-Port": "1"}
    headers["Host"] = "127.0.0.1"
    assert httpx.get(url, headers=headers).status_code == 401
    headers = {**key.headers(token, "GET", url.replace("http:", "https:"))}
    headers["X-Forwarded-Proto"] = "https"
    assert httpx.get(url, headers=headers).status_code == 401
