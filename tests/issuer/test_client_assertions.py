"""private_key_jwt (RFC 7523 §2.2 and §3, OpenID Connect Core §9): a client authenticates with
an assertion signed by one of its keys, at the token, introspection and revocation endpoints;
every refusal is the one fixed 401 ``invalid_client``, and a ``jti`` is accepted once, by the
database, so two replicas can never both accept one assertion."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config
from gateway.issuer.clientauth import FAILED
from gateway.models import ClientAssertionUse, User
from gateway.storage import Storage
from tests.support.app import ISSUER, Registered
from tests.support.assertions import (
    ASSERTION_TYPE,
    TOKEN_URL,
    Signer,
    b64url,
    form,
    jwks,
    key_client,
    unsigned,
)
from tests.support.issuer import (
    INTROSPECT,
    METADATA,
    REDIRECT_URI,
    REVOKE,
    TOKEN,
    get_code,
    oauth_error,
    pkce_pair,
    tokens,
)
from tests.support.replicas import at_once

ALGORITHMS = ["ES256", "EdDSA", "PS256", "RS256"]


@pytest.fixture
def signer() -> Signer:
    return Signer("ES256", "k1")


@pytest.fixture
def keyed(storage: Storage, signer: Signer) -> Registered:
    return key_client(storage, keys=jwks(signer), can_introspect=True)


def client_credentials(client: TestClient, assertion: str, **extra: str) -> Any:
    return client.post(TOKEN, data=form(assertion, grant_type="client_credentials", **extra))


def refused(response: Any) -> None:
    body = oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == FAILED


# --- accepted -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_client_credentials_with_each_algorithm(client, storage, alg):
    signer = Signer(alg, "only")
    keyed = key_client(storage, keys=jwks(signer))
    issued = tokens(client_credentials(client, signer.assertion(keyed.client_id)))
    assert issued["token_type"] == "Bearer"


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param(ISSUER, id="issuer"),
        pytest.param(TOKEN_URL, id="token-endpoint"),
        pytest.param(["https://other.example", ISSUER], id="list-with-issuer"),
    ],
)
def test_audiences_accepted(client, keyed, signer, aud):
    tokens(client_credentials(client, signer.assertion(keyed.client_id, aud=aud)))


def test_a_lone_key_needs_no_kid(client, storage):
    signer = Signer("ES256", kid=None)
    keyed = key_client(storage, keys=jwks(signer))
    tokens(client_credentials(client, signer.assertion(keyed.client_id)))


def test_the_kid_picks_among_several_keys(client, storage):
    first, second = Signer("ES256", "a"), Signer("RS256", "b")
    keyed = key_client(storage, keys=jwks(first, second))
    tokens(client_credentials(client, second.assertion(keyed.client_id)))
    tokens(client_credentials(client, first.assertion(keyed.client_id)))
    # one key per algorithm: the kid may be left out too
    tokens(client_credentials(client, second.assertion(keyed.client_id, header={"kid": None})))


def test_a_body_client_id_naming_the_client_is_accepted(client, keyed, signer):
    assertion = signer.assertion(keyed.client_id)
    tokens(client_credentials(client, assertion, client_id=keyed.client_id))


def test_the_authorization_code_grant(client, keyed, signer, user: User):
    verifier, challenge = pkce_pair()
    code = get_code(client, keyed, user, challenge=challenge)
    response = client.post(
        TOKEN,
        data=form(
            signer.assertion(keyed.client_id),
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT_URI,
            code_verifier=verifier,
        ),
    )
    issued = tokens(response)
    assert issued["refresh_token"]
    again = client.post(
        TOKEN,
        data=form(
            signer.assertion(keyed.client_id),
            grant_type="refresh_token",
            refresh_token=issued["refresh_token"],
        ),
    )
    tokens(again)


def test_introspection_and_revocation(client, keyed, signer):
    access = tokens(client_credentials(client, signer.assertion(keyed.client_id)))["access_token"]
    info = client.post(INTROSPECT, data=form(signer.assertion(keyed.client_id), token=access))
    assert info.status_code == 200 and info.json()["active"] is True, info.text
    gone = client.post(REVOKE, data=form(signer.assertion(keyed.client_id), token=access))
    assert gone.status_code == 200, gone.text
    info = client.post(INTROSPECT, data=form(signer.assertion(keyed.client_id), token=access))
    assert info.json() == {"active": False}


def test_the_jti_is_stored_until_the_assertion_expires(client, keyed, signer, storage, config):
    exp = int(time.time()) + 120
    tokens(client_credentials(client, signer.assertion(keyed.client_id, exp=exp, jti="j-1")))
    with storage.session() as session:
        row = session.scalars(sa.select(ClientAssertionUse)).one()
    assert (row.client_id, row.jti) == (keyed.client_id, "j-1")
    assert exp <= row.expires_at <= exp + config.tokens.leeway


# --- refused --------------------------------------------------------------------------------


def _hs256_with_public_key(signer: Signer, client_id: str) -> str:
    """The classic confusion: the public key's JSON used as an HMAC secret."""
    header = {"alg": "HS256", "kid": signer.kid}
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "exp": int(time.time()) + 60,
        "jti": "hs",
    }
    signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
    secret = json.dumps(signer.jwk()).encode()
    mac = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{b64url(mac)}"


def _none(client_id: str) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": ISSUER, "exp": now + 60, "jti": "n"}
    return unsigned({"alg": "none", "kid": "k1"}, body)


def _bad_signature(signer: Signer, client_id: str) -> str:
    head, body, sig = signer.assertion(client_id).split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged["jti"] = "forged"
    return f"{head}.{b64url(json.dumps(forged).encode())}.{sig}"


def _deep(signer: Signer, client_id: str) -> str:
    """Claims nested past any parser's recursion limit: refused, not a 500."""
    head = signer.assertion(client_id).split(".")[0]
    body = b64url(("[" * 6000 + "]" * 6000).encode())
    return f"{head}.{body}.{b64url(b'x' * 64)}"


def _repeated(signer: Signer, client_id: str) -> str:
    """``sub`` twice: readers disagree on which counts, so it is refused, not guessed at."""
    head, body, sig = signer.assertion(client_id).split(".")
    text = base64.urlsafe_b64decode(body + "==").decode()
    doubled = text[:-1] + ', "sub": "someone-else"}'
    return f"{head}.{b64url(doubled.encode())}.{sig}"


REFUSALS: list[Any] = [
    pytest.param(lambda s, c, o: _none(c), id="alg-none"),
    pytest.param(lambda s, c, o: _hs256_with_public_key(s, c), id="hs256-with-public-key"),
    pytest.param(lambda s, c, o: s.assertion(c, header={"kid": "k2"}), id="wrong-kid"),
    pytest.param(lambda s, c, o: s.assertion("no-such-client"), id="unknown-client"),
    pytest.param(lambda s, c, o: s.assertion(c, iss="someone-else"), id="iss-not-sub"),
    pytest.param(lambda s, c, o: s.assertion(c, sub=o, iss=o), id="iss-another-client"),
    pytest.param(lambda s, c, o: s.assertion(c, aud="https://other.example"), id="aud-wrong"),
    pytest.param(
        lambda s, c, o: s.assertion(c, aud=f"{ISSUER}/oauth/introspect"), id="aud-other-endpoint"
    ),
    pytest.param(lambda s, c, o: s.assertion(c, aud=None), id="aud-missing"),
    pytest.param(lambda s, c, o: s.assertion(c, exp=None), id="exp-missing"),
    pytest.param(lambda s, c, o: s.assertion(c, exp=int(time.time()) - 120), id="exp-past"),
    pytest.param(lambda s, c, o: s.assertion(c, exp=int(time.time()) + 400), id="exp-too-far"),
    pytest.param(lambda s, c, o: s.assertion(c, exp="soon"), id="exp-not-a-number"),
    pytest.param(lambda s, c, o: s.assertion(c, iat=int(time.time()) + 120), id="iat-future"),
    pytest.param(lambda s, c, o: s.assertion(c, nbf=int(time.time()) + 120), id="nbf-future"),
    pytest.param(lambda s, c, o: s.assertion(c, jti=None), id="jti-missing"),
    pytest.param(lambda s, c, o: s.assertion(c, jti="x" * 256), id="jti-too-long"),
    pytest.param(lambda s, c, o: s.assertion(c, jti="a\x00b"), id="jti-nul"),
    pytest.param(lambda s, c, o: s.assertion(c, header={"crit": ["kid"]}), id="crit-header"),
    pytest.param(lambda s, c, o: _bad_signature(s, c), id="bad-signature"),
    pytest.param(lambda s, c, o: Signer("ES256", "k1").assertion(c), id="another-key"),
    pytest.param(lambda s, c, o: "not.a.jwt", id="garbage"),
    pytest.param(lambda s, c, o: _deep(s, c), id="nested-too-deep"),
    pytest.param(lambda s, c, o: _repeated(s, c), id="claim-repeated"),
    pytest.param(lambda s, c, o: "x" * 20000, id="too-long"),
]


@pytest.fixture
def other(storage: Storage) -> Registered:
    return key_client(storage, keys=jwks(Signer("ES256", "k1")))


@pytest.mark.parametrize("make", REFUSALS)
@pytest.mark.parametrize("endpoint", [TOKEN, INTROSPECT, REVOKE])
def test_refused(client, keyed, other, signer, make, endpoint):
    assertion = make(signer, keyed.client_id, other.client_id)
    extra = {"grant_type": "client_credentials"} if endpoint == TOKEN else {"token": "x"}
    refused(client.post(endpoint, data=form(assertion, **extra)))


def test_a_key_of_another_client_is_refused(client, keyed, storage):
    """The other client's key signs an assertion naming the first: refused."""
    stranger = Signer("ES256", "k1")
    key_client(storage, keys=jwks(stranger))
    refused(client_credentials(client, stranger.assertion(keyed.client_id)))


def test_a_body_client_id_naming_another_client_is_refused(client, keyed, other, signer):
    assertion = signer.assertion(keyed.client_id)
    refused(client_credentials(client, assertion, client_id=other.client_id))


def test_a_client_of_another_method_cannot_use_an_assertion(client, confidential, signer):
    refused(client_credentials(client, signer.assertion(confidential.client_id)))


def test_a_key_client_cannot_use_a_secret_or_nothing(client, keyed):
    refused(
        client.post(
            TOKEN,
            data={"grant_type": "client_credentials", "client_id": keyed.client_id},
        )
    )
    refused(
        client.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            auth=(keyed.client_id, "guess"),
        )
    )


def test_a_replay_is_refused(client, keyed, signer):
    assertion = signer.assertion(keyed.client_id)
    tokens(client_credentials(client, assertion))
    refused(client_credentials(client, assertion))
    refused(client.post(INTROSPECT, data=form(assertion, token="x")))


def test_a_refused_assertion_does_not_use_up_its_jti(client, keyed, signer):
    """Only a verified assertion's jti is stored: a forgery cannot burn a real one."""
    real = signer.assertion(keyed.client_id, jti="kept")
    refused(
        client_credentials(client, Signer("ES256", "k1").assertion(keyed.client_id, jti="kept"))
    )
    tokens(client_credentials(client, real))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"client_assertion": "x"}, id="assertion-without-type"),
        pytest.param({"client_assertion_type": ASSERTION_TYPE}, id="type-without-assertion"),
        pytest.param(
            {
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                "client_assertion": "x",
            },
            id="another-type",
        ),
    ],
)
@pytest.mark.parametrize("endpoint", [TOKEN, INTROSPECT, REVOKE])
def test_an_incomplete_or_foreign_assertion_is_a_bad_request(client, data, endpoint):
    response = client.post(
        endpoint, data={"grant_type": "client_credentials", "token": "x", **data}
    )
    oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("endpoint", [TOKEN, INTROSPECT, REVOKE])
def test_an_assertion_and_another_method_at_once_is_a_bad_request(
    client, keyed, signer, confidential, endpoint
):
    extra = {"grant_type": "client_credentials", "token": "x"}
    with_basic = client.post(
        endpoint, data=form(signer.assertion(keyed.client_id), **extra), auth=confidential.auth
    )
    oauth_error(with_basic, 400, "invalid_request")
    with_secret = client.post(
        endpoint, data=form(signer.assertion(keyed.client_id), client_secret="x", **extra)
    )
    oauth_error(with_secret, 400, "invalid_request")


# --- replicas -------------------------------------------------------------------------------


@pytest.fixture
def two_replicas(config: Config, storage: Storage) -> Iterator[tuple[TestClient, TestClient]]:
    first, second = create_app(config), create_app(config)
    with (
        TestClient(first, base_url=ISSUER) as a,
        TestClient(second, base_url=ISSUER) as b,
    ):
        yield a, b


def test_two_replicas_never_both_accept_one_assertion(two_replicas, keyed, signer):
    a, b = two_replicas
    for _ in range(5):
        assertion = signer.assertion(keyed.client_id)
        answers = at_once(
            lambda once=assertion: client_credentials(a, once),
            lambda once=assertion: client_credentials(b, once),
        )
        assert sorted(r.status_code for r in answers) == [200, 401], [r.text for r in answers]


# --- discovery ------------------------------------------------------------------------------


def test_discovery_lists_the_method_and_its_algorithms(client):
    metadata = client.get(METADATA).json()
    for endpoint in ("token", "revocation", "introspection"):
        assert "private_key_jwt" in metadata[f"{endpoint}_endpoint_auth_methods_supported"]
        assert metadata[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == ALGORITHMS
