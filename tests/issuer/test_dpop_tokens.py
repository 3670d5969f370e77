"""DPoP at the token endpoint (RFC 9449 §5): every grant with and without a proof, what a
bound token carries (``cnf.jkt``, ``token_type`` ``DPoP``), the answers to refused proofs and
that they leave no trace, clients that must use DPoP, and introspection of bound tokens.
Proofs are made with joserfc (``tests/support/dpop.py``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.issuer.dpop_tokens import ONE_PROOF
from gateway.models import Client, User
from gateway.storage import Storage
from tests.support.app import PASSWORD, Registered, make_client
from tests.support.dpop import ALGORITHMS, TOKEN_URL, ProofKey, dpop_error, with_proof
from tests.support.issuer import (
    TOKEN,
    decode,
    get_code,
    introspect,
    oauth_error,
    pkce_pair,
    tokens,
)

GRANTS = ("password", "client_credentials", "authorization_code", "refresh_token")


def password_form(user: User) -> dict[str, str]:
    return {"grant_type": "password", "username": user.email, "password": PASSWORD}


def issue(
    client: TestClient,
    grant: str,
    registered: Registered,
    user: User,
    key: ProofKey | None,
) -> httpx.Response:
    """A token request of ``grant`` (its code or refresh token got without a proof), with a
    proof by ``key`` if any."""
    if grant == "password":
        return with_proof(client, registered, key, **password_form(user))
    if grant == "client_credentials":
        return with_proof(client, registered, key, grant_type="client_credentials")
    if grant == "authorization_code":
        verifier, challenge = pkce_pair()
        code = get_code(client, registered, user, challenge=challenge, scope="orders:read")
        form = {"code": code, "code_verifier": verifier, "redirect_uri": _redirect(registered)}
        return with_proof(client, registered, key, grant_type="authorization_code", **form)
    first = tokens(with_proof(client, registered, None, **password_form(user)))
    return with_proof(
        client, registered, key, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )


def _redirect(registered: Registered) -> str:
    return str(registered.row.redirect_uris[0])


def set_require_dpop(storage: Storage, registered: Registered) -> None:
    with storage.session() as session:
        session.execute(
            sa.update(Client)
            .where(Client.client_id == registered.client_id)
            .values(require_dpop=True)
        )


# --- every grant --------------------------------------------------------------------------------


@pytest.mark.parametrize("grant", GRANTS)
def test_without_a_proof_every_grant_issues_a_bearer_token(
    client: TestClient, confidential: Registered, user: User, grant: str
) -> None:
    body = tokens(issue(client, grant, confidential, user, None))
    assert body["token_type"] == "Bearer"
    assert "cnf" not in decode(client, body["access_token"])


@pytest.mark.parametrize("grant", GRANTS)
def test_with_a_proof_every_grant_binds_its_access_token(
    client: TestClient, confidential: Registered, user: User, grant: str
) -> None:
    key = ProofKey("ES256")
    response = issue(client, grant, confidential, user, key)
    body = tokens(response)
    assert body["token_type"] == "DPoP"
    assert decode(client, body["access_token"])["cnf"] == {"jkt": key.jkt}
    assert response.headers["cache-control"] == "no-store"
    assert "dpop-nonce" not in response.headers  # nonces are off


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_proof_of_each_algorithm_binds_the_token(
    client: TestClient, confidential: Registered, user: User, alg: str
) -> None:
    key = ProofKey(alg)
    body = tokens(with_proof(client, confidential, key, **password_form(user)))
    assert decode(client, body["access_token"])["cnf"] == {"jkt": key.jkt}


def test_a_public_clients_tokens_are_bound_too(
    client: TestClient, public: Registered, user: User
) -> None:
    key = ProofKey("EdDSA")
    body = tokens(issue(client, "authorization_code", public, user, key))
    assert body["token_type"] == "DPoP"
    assert decode(client, body["access_token"])["cnf"] == {"jkt": key.jkt}


# --- refused proofs ----------------------------------------------------------------------------


def _post(client: TestClient, registered: Registered, headers: Any, **form: str) -> httpx.Response:
    return client.post(TOKEN, data=form, auth=registered.auth, headers=headers)


def test_two_dpop_headers_are_refused(
    client: TestClient, confidential: Registered, user: User
) -> None:
    key = ProofKey()
    headers = [("DPoP", key.proof(TOKEN_URL)), ("DPoP", key.proof(TOKEN_URL))]
    body = dpop_error(_post(client, confidential, headers, **password_form(user)))
    assert body["error_description"] == ONE_PROOF


def test_a_comma_joined_dpop_header_is_refused(
    client: TestClient, confidential: Registered, user: User
) -> None:
    key = ProofKey()
    joined = key.proof(TOKEN_URL) + ", " + key.proof(TOKEN_URL)
    body = dpop_error(_post(client, confidential, {"DPoP": joined}, **password_form(user)))
    assert body["error_description"] == ONE_PROOF


@pytest.mark.parametrize(
    "proof",
    [
        pytest.param(lambda k: k.proof(TOKEN_URL.replace("/token", "/revoke")), id="other-path"),
        pytest.param(lambda k: k.proof(TOKEN_URL.replace("127.0.0.1", "10.0.0.1")), id="host"),
        pytest.param(lambda k: k.proof(TOKEN_URL, htm="GET"), id="htm"),
        pytest.param(lambda k: k.proof(TOKEN_URL, iat=1_000_000_000), id="stale"),
        pytest.param(lambda k: k.proof(TOKEN_URL, header={"typ": "JWT"}), id="typ"),
        pytest.param(lambda k: "not-a-proof", id="malformed"),
        pytest.param(lambda k: "", id="empty"),
        pytest.param(lambda k: k.proof(TOKEN_URL)[:-4] + "AAAA", id="signature"),
    ],
)
def test_a_refused_proof_is_invalid_dpop_proof(
    client: TestClient, confidential: Registered, user: User, proof: Any
) -> None:
    headers = {"DPoP": proof(ProofKey())}
    body = dpop_error(_post(client, confidential, headers, **password_form(user)))
    assert body["error_description"].startswith("DPoP proof ")


def test_the_host_and_scheme_of_htu_are_compared_without_case(
    client: TestClient, confidential: Registered, user: User
) -> None:
    key = ProofKey()
    headers = {"DPoP": key.proof("HTTP://127.0.0.1:8000/oauth/token")}
    tokens(_post(client, confidential, headers, **password_form(user)))


def test_a_proof_sent_twice_is_refused_the_second_time(
    client: TestClient, confidential: Registered, user: User
) -> None:
    headers = {"DPoP": ProofKey().proof(TOKEN_URL)}
    tokens(_post(client, confidential, headers, **password_form(user)))
    body = dpop_error(_post(client, confidential, headers, **password_form(user)))
    assert body["error_description"] == "DPoP proof was used before"


def test_a_refused_proof_leaves_the_code_redeemable(
    client: TestClient, public: Registered, user: User
) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(client, public, user, challenge=challenge, scope="orders:read")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": _redirect(public),
        "client_id": public.client_id,
    }
    key = ProofKey()
    stale = {"DPoP": key.proof(TOKEN_URL, iat=1_000_000_000)}
    dpop_error(client.post(TOKEN, data=form, headers=stale))
    body = tokens(client.post(TOKEN, data=form, headers={"DPoP": key.proof(TOKEN_URL)}))
    assert decode(client, body["access_token"])["cnf"] == {"jkt": key.jkt}


def test_a_refused_proof_rotates_no_refresh_token(
    client: TestClient, confidential: Registered, user: User
) -> None:
    first = tokens(with_proof(client, confidential, None, **password_form(user)))
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    dpop_error(_post(client, confidential, {"DPoP": "x.y.z"}, **form))
    # not rotated: presenting it again is no reuse, and its family lives
    second = tokens(_post(client, confidential, {}, **form))
    assert second["refresh_token"] != first["refresh_token"]
    tokens(_post(client, confidential, {}, **{**form, "refresh_token": second["refresh_token"]}))


def test_a_refused_proof_is_refused_before_client_authentication_matters(
    client: TestClient, confidential: Registered, user: User
) -> None:
    """The proof is checked first: a wrong secret with a bad proof is still a proof error, and
    says nothing about the client."""
    response = client.post(
        TOKEN,
        data=password_form(user),
        auth=(confidential.client_id, "wrong"),
        headers={"DPoP": "x.y.z"},
    )
    dpop_error(response)


# --- clients that must use DPoP (RFC 9449 §5.2) ------------------------------------------------


@pytest.mark.parametrize("grant", GRANTS)
def test_a_client_that_requires_dpop_gets_nothing_without_a_proof(
    client: TestClient, storage: Storage, confidential: Registered, user: User, grant: str
) -> None:
    if grant == "refresh_token":  # its refresh token got with a proof, then used without
        key = ProofKey()
        set_require_dpop(storage, confidential)
        first = tokens(with_proof(client, confidential, key, **password_form(user)))
        form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        response = with_proof(client, confidential, None, **form)
    else:
        set_require_dpop(storage, confidential)
        response = issue(client, grant, confidential, user, None)
    body = oauth_error(response, 400, "invalid_request")
    assert "DPoP" in body["error_description"]


def test_a_client_that_requires_dpop_gets_bound_tokens_with_a_proof(
    client: TestClient, storage: Storage, confidential: Registered, user: User
) -> None:
    set_require_dpop(storage, confidential)
    key = ProofKey()
    body = tokens(with_proof(client, confidential, key, grant_type="client_credentials"))
    assert body["token_type"] == "DPoP"


def test_require_dpop_is_per_client(
    client: TestClient, storage: Storage, confidential: Registered, user: User
) -> None:
    other = make_client(storage, name="Other")
    set_require_dpop(storage, confidential)
    tokens(with_proof(client, other, None, grant_type="client_credentials"))


# --- introspection (RFC 7662, RFC 9449 §6.2) ---------------------------------------------------


def test_introspection_of_a_bound_token_gives_its_key_and_type(
    client: TestClient, confidential: Registered, resource_server: Registered, user: User
) -> None:
    key = ProofKey()
    body = tokens(with_proof(client, confidential, key, **password_form(user)))
    info = introspect(client, resource_server, body["access_token"])
    assert info["active"] is True
    assert info["token_type"] == "DPoP"
    assert info["cnf"] == {"jkt": key.jkt}


def test_introspection_of_a_bearer_token_says_bearer(
    client: TestClient, confidential: Registered, resource_server: Registered, user: User
) -> None:
    body = tokens(with_proof(client, confidential, None, **password_form(user)))
    info = introspect(client, resource_server, body["access_token"])
    assert info["token_type"] == "Bearer"
    assert "cnf" not in info
