"""DPoP at the issuer's own protected resources, UserInfo and ``/oauth/me`` (RFC 9449 §7): a
bound token is taken in the ``DPoP`` scheme with its proof (``htm`` the method, ``htu`` the
endpoint's URL under the issuer) and refused as ``Bearer``; a bearer token is refused as
``DPoP``; every check of the proof, replay, nonces, and two headers. Tokens come from the token
endpoint with a proof; proofs are made with joserfc (``tests/support/dpop.py``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.config import Config, DpopConfig
from gateway.models import User
from gateway.storage import Storage
from tests.support.app import ISSUER, PASSWORD, Registered, make_client
from tests.support.dpop import ProofKey, with_proof
from tests.support.issuer import running, tokens

USERINFO, ME = "/oauth/userinfo", "/oauth/me"
ALGS = 'algs="ES256 EdDSA PS256 RS256"'
#: where bearer tokens are taken too, a bare Bearer challenge follows the DPoP one (§7.1)
BESIDE = 'Bearer realm="gateway"'
BOUND = "a DPoP-bound token needs the DPoP scheme and a proof"

#: (path, method): every door and method of the two resources
DOORS = [
    pytest.param(USERINFO, "GET", id="userinfo-GET"),
    pytest.param(USERINFO, "POST", id="userinfo-POST"),
    pytest.param(ME, "GET", id="me-GET"),
]


@pytest.fixture
def rp(storage: Storage) -> Registered:
    return make_client(storage, name="Relying party", scope="openid profile email")


@pytest.fixture
def key() -> ProofKey:
    return ProofKey("ES256")


def issued(
    client: TestClient,
    rp: Registered,
    user: User,
    key: ProofKey | None,
    scope: str = "openid profile email",
) -> str:
    """An access token from the token endpoint (password grant), bound to ``key`` if any."""
    form = {"grant_type": "password", "username": user.email, "password": PASSWORD}
    body = tokens(with_proof(client, rp, key, scope=scope, **form))
    assert body["token_type"] == ("Bearer" if key is None else "DPoP")
    access_token: str = body["access_token"]
    return access_token


@pytest.fixture
def bound(client: TestClient, rp: Registered, user: User, key: ProofKey) -> str:
    return issued(client, rp, user, key)


def send(
    client: TestClient,
    path: str,
    method: str = "GET",
    headers: Any = None,
) -> httpx.Response:
    return client.request(method, path, headers=headers)


def proven(
    key: ProofKey, token: str, path: str, method: str = "GET", **claims: Any
) -> dict[str, str]:
    """``Authorization: DPoP`` and a fresh proof for ``method`` at the endpoint's URL."""
    proof = key.proof(ISSUER + path, method, access_token=token, **claims)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def refused(response: httpx.Response, error: str, description: str) -> None:
    """A 401 in the ``DPoP`` scheme with the ``Bearer`` challenge beside, never cached."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == (
        f'DPoP {ALGS}, error="{error}", error_description="{description}", {BESIDE}'
    )
    assert response.json() == {"error": error, "error_description": description}
    assert response.headers["cache-control"] == "no-store"


# --- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method"), DOORS)
def test_a_bound_token_with_its_proof_is_accepted(
    client: TestClient, bound: str, key: ProofKey, user: User, path: str, method: str
) -> None:
    response = send(client, path, method, proven(key, bound, path, method))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "dpop-nonce" not in response.headers  # nonces are off
    if path == USERINFO:
        assert response.json()["sub"] == user.id
    else:
        assert response.json() == {"id": user.id, "email": user.email}


def test_the_dpop_scheme_is_case_insensitive(client: TestClient, bound: str, key: ProofKey) -> None:
    headers = proven(key, bound, USERINFO)
    headers["Authorization"] = f"dpop {bound}"
    assert send(client, USERINFO, headers=headers).status_code == 200


def test_a_bearer_token_is_still_taken_as_bearer(
    client: TestClient, rp: Registered, user: User
) -> None:
    token = issued(client, rp, user, None)
    response = send(client, USERINFO, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


# --- the wrong scheme --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [USERINFO, ME])
def test_a_bound_token_as_bearer_is_refused(
    client: TestClient, bound: str, key: ProofKey, path: str
) -> None:
    """§7.2: else whoever copied the token could skip the proof. A proof beside changes
    nothing: the scheme says how the token is presented."""
    response = send(client, path, headers={"Authorization": f"Bearer {bound}"})
    refused(response, "invalid_token", BOUND)
    headers = {"Authorization": f"Bearer {bound}", "DPoP": proven(key, bound, path)["DPoP"]}
    refused(send(client, path, headers=headers), "invalid_token", BOUND)


@pytest.mark.parametrize("path", [USERINFO, ME])
def test_a_bearer_token_as_dpop_is_refused(
    client: TestClient, rp: Registered, user: User, key: ProofKey, path: str
) -> None:
    token = issued(client, rp, user, None)
    response = send(client, path, headers=proven(key, token, path))
    refused(response, "invalid_token", "the token is not DPoP-bound")


def test_a_bad_token_in_the_dpop_scheme_is_refused_in_that_scheme(
    client: TestClient, key: ProofKey
) -> None:
    response = send(client, USERINFO, headers=proven(key, "not.a.jwt", USERINFO))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith(f'DPoP {ALGS}, error="invalid_token"')


# --- the proof ---------------------------------------------------------------------------------


def test_a_dpop_request_without_a_proof_is_refused(client: TestClient, bound: str) -> None:
    response = send(client, USERINFO, headers={"Authorization": f"DPoP {bound}"})
    refused(response, "invalid_dpop_proof", "DPoP proof is missing")


@pytest.mark.parametrize(
    ("path", "htu"),
    [
        pytest.param(USERINFO, ISSUER + ME, id="the-other-door"),
        pytest.param(ME, ISSUER + USERINFO, id="the-other-door-me"),
        pytest.param(USERINFO, "https://elsewhere.example" + USERINFO, id="another-host"),
        pytest.param(USERINFO, "http://testserver" + USERINFO, id="not-the-issuer"),
        pytest.param(USERINFO, ISSUER + "/oauth/token", id="token-endpoint"),
    ],
)
def test_a_proof_for_another_url_is_refused(
    client: TestClient, bound: str, key: ProofKey, path: str, htu: str
) -> None:
    headers = {
        "Authorization": f"DPoP {bound}",
        "DPoP": key.proof(htu, "GET", access_token=bound),
    }
    refused(send(client, path, headers=headers), "invalid_dpop_proof", _other_request())


def test_the_htu_is_the_issuers_not_the_requests_host(
    client: TestClient, bound: str, key: ProofKey
) -> None:
    """The client used the URL discovery publishes; a Host header the request names instead
    is not what the proof is checked against."""
    headers = {**proven(key, bound, USERINFO), "Host": "elsewhere.example"}
    assert send(client, USERINFO, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("method", "htm"),
    [
        pytest.param("GET", "POST", id="get-proved-as-post"),
        pytest.param("POST", "GET", id="post-proved-as-get"),
        pytest.param("GET", "get", id="lower-case"),
    ],
)
def test_a_proof_for_another_method_is_refused(
    client: TestClient, bound: str, key: ProofKey, method: str, htm: str
) -> None:
    headers = proven(key, bound, USERINFO, htm)
    refused(send(client, USERINFO, method, headers), "invalid_dpop_proof", _other_request())


def test_a_replayed_proof_is_refused(client: TestClient, bound: str, key: ProofKey) -> None:
    headers = proven(key, bound, USERINFO)
    assert send(client, USERINFO, headers=headers).status_code == 200
    response = send(client, USERINFO, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"


def test_a_proof_for_another_token_is_refused(
    client: TestClient, rp: Registered, user: User, bound: str, key: ProofKey
) -> None:
    other = issued(client, rp, user, key)
    headers = {"Authorization": f"DPoP {bound}", "DPoP": proven(key, other, USERINFO)["DPoP"]}
    response = send(client, USERINFO, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"


def test_a_proof_by_another_key_is_refused(client: TestClient, bound: str) -> None:
    response = send(client, USERINFO, headers=proven(ProofKey("EdDSA"), bound, USERINFO))
    refused(response, "invalid_token", "invalid DPoP key binding")


# --- refusals of a bound token after its proof -------------------------------------------------


def test_a_bound_token_without_the_scope_is_refused_in_the_dpop_scheme(
    client: TestClient, rp: Registered, user: User, key: ProofKey
) -> None:
    token = issued(client, rp, user, key, scope="openid")
    response = send(client, ME, headers=proven(key, token, ME))
    assert response.status_code == 403, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'DPoP {ALGS}, error="insufficient_scope"'), challenge
    assert 'scope="profile"' in challenge and "Bearer" not in challenge


def test_a_bound_client_token_is_refused_in_the_dpop_scheme(
    client: TestClient, rp: Registered, key: ProofKey
) -> None:
    form = {"grant_type": "client_credentials", "scope": "openid"}
    token = tokens(with_proof(client, rp, key, **form))["access_token"]
    response = send(client, USERINFO, headers=proven(key, token, USERINFO))
    refused(response, "invalid_token", "not a user token")


# --- two headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "scheme"),
    [
        pytest.param("Bearer", "Bearer", id="two-bearer"),
        pytest.param("DPoP", "DPoP", id="bearer-and-dpop"),
    ],
)
def test_two_authorization_headers_are_invalid_request(
    client: TestClient, bound: str, second: str, scheme: str
) -> None:
    """RFC 6750 §3.1: never guess which one the client meant."""
    two = [("Authorization", f"Bearer {bound}"), ("Authorization", f"{second} {bound}")]
    response = send(client, USERINFO, headers=two)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.headers["www-authenticate"].startswith(scheme + " ")


def test_two_proofs_are_invalid_request(client: TestClient, bound: str, key: ProofKey) -> None:
    """§4.3: "not more than one DPoP HTTP request header field"."""
    one, other = proven(key, bound, USERINFO), proven(key, bound, USERINFO)
    headers = [
        ("Authorization", one["Authorization"]),
        ("DPoP", one["DPoP"]),
        ("DPoP", other["DPoP"]),
    ]
    response = send(client, USERINFO, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.headers["www-authenticate"].startswith(f"DPoP {ALGS}, error=")


# --- nonces ------------------------------------------------------------------------------------


def test_with_nonces_a_proof_needs_the_current_one_and_a_success_gives_the_next(
    client: TestClient, config: Config, bound: str, key: ProofKey
) -> None:
    nonces = dataclasses.replace(config, dpop=DpopConfig(nonces=True))
    with running(nonces) as app:
        response = send(app, USERINFO, headers=proven(key, bound, USERINFO))
        refused(response, "use_dpop_nonce", "DPoP proof needs a current server nonce")
        nonce = response.headers["dpop-nonce"]
        response = send(app, USERINFO, headers=proven(key, bound, USERINFO, nonce=nonce))
        assert response.status_code == 200, response.text
        assert response.headers["dpop-nonce"]  # RFC 9449 §8.2: for the next proof
        wrong = proven(key, bound, USERINFO, nonce="x" * 43)
        assert send(app, USERINFO, headers=wrong).json()["error"] == "use_dpop_nonce"


def _other_request() -> str:
    return "DPoP proof is for another request"
