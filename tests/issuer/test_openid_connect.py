"""OpenID Connect Core 1.0 on the code flow: the ID token (§2, §3.1.3.6), its refresh (§12.2),
the nonce (§3.1.2.1), UserInfo (§5.3) and the product's ``/oauth/me``, Discovery 1.0 (§3), and
the rule that an ID token is never an access token, nor an access token an ID token."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from gateway import accounts
from gateway.config import Config, RouteConfig
from gateway.errors import InvalidInput
from gateway.issuer.session import LoginSession, SessionCodec
from gateway.keys import KeyRing, create_key, session_secret
from gateway.models import User
from gateway.storage import Storage
from tests.support.app import ISSUER, PASSWORD, Registered, make_client
from tests.support.issuer import (
    JWKS,
    METADATA,
    authorize_url,
    decode,
    get_code,
    introspect,
    password_grant,
    redeem,
    redirect_params,
    refresh,
    running,
    token_request,
    tokens,
)
from tests.support.keyutil import at_hash
from tests.support.oidc import decode_id_token

DISCOVERY = "/.well-known/openid-configuration"
USERINFO = "/oauth/userinfo"
ME = "/oauth/me"
OIDC_SCOPES = "openid profile email orders:read"
CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens: a request that got through would be 502


@pytest.fixture
def rp(storage: Storage) -> Registered:
    """A relying party: a confidential client registered with the OpenID Connect scopes."""
    return make_client(storage, name="Relying party", scope=OIDC_SCOPES)


@pytest.fixture
def carol(storage: Storage) -> User:
    with storage.session() as session:
        return accounts.create_user(session, "carol@example.com", PASSWORD, "Carol Example")


def code_flow(
    client: TestClient, registered: Registered, user: User, **params: str | None
) -> dict[str, Any]:
    return tokens(redeem(client, registered, get_code(client, registered, user, **params)))


def bearer(client: TestClient, path: str, token: str, method: str = "GET") -> httpx.Response:
    return client.request(method, path, headers={"Authorization": f"Bearer {token}"})


def assert_bearer_error(response: httpx.Response, status: int, error: str) -> None:
    """RFC 6750 §3: the status, the challenge naming the error, a JSON body, no caching."""
    assert response.status_code == status, response.text
    assert f'error="{error}"' in response.headers["www-authenticate"]
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


# --- the ID token (§2, §3.1.3.3, §3.1.3.6) ------------------------------------------------------


def test_id_token_claims(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="openid profile email", nonce="n-0S6_WzA2Mj")

    header = jwt.get_unverified_header(issued["id_token"])
    assert header["typ"] == "JWT"
    assert header["kid"] in {k["kid"] for k in client.get(JWKS).json()["keys"]}
    claims = decode_id_token(client, issued["id_token"], rp.client_id)
    access = decode(client, issued["access_token"])
    assert set(claims) == {
        *("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "amr"),
        *("email", "email_verified", "name"),
    }
    assert claims["aud"] == rp.client_id  # one audience, as a single string
    assert claims["sub"] == access["sub"] == carol.id
    assert claims["auth_time"] == access["auth_time"]
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["at_hash"] == at_hash(issued["access_token"], header["alg"])
    assert claims["amr"] == ["pwd"]
    assert (claims["email"], claims["email_verified"]) == ("carol@example.com", False)
    assert claims["name"] == "Carol Example"
    # the ID token's sid is the browser session; the access token's stays the grant
    assert claims["sid"] != access["sid"]
    assert abs(claims["iat"] - time.time()) < 60 and claims["exp"] > claims["iat"]


def test_no_nonce_sent_no_nonce_claim(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="openid")
    claims = decode_id_token(client, issued["id_token"], rp.client_id)
    assert "nonce" not in claims
    # §5.4: no email or profile scope, no such claims
    assert not {"email", "email_verified", "name"} & set(claims)


@pytest.mark.parametrize(
    ("scope", "released"),
    [
        pytest.param("openid email", {"email", "email_verified"}, id="email"),
        pytest.param("openid profile", {"name"}, id="profile"),
    ],
)
def test_claims_follow_the_granted_scopes(client, rp, carol, scope, released):
    claims = decode_id_token(
        client, code_flow(client, rp, carol, scope=scope)["id_token"], rp.client_id
    )
    assert {"email", "email_verified", "name"} & set(claims) == released


def test_profile_of_a_user_without_a_name_has_no_name(client, rp, user):
    claims = decode_id_token(
        client, code_flow(client, rp, user, scope="openid profile")["id_token"], rp.client_id
    )
    assert "name" not in claims


def test_no_openid_scope_no_id_token(client, rp, carol):
    assert "id_token" not in code_flow(client, rp, carol, scope="profile email")


def test_password_grant_gets_no_id_token(client, rp, carol):
    """OpenID Connect authenticates through the authorization endpoint: no browser login, no ID
    token."""
    issued = tokens(password_grant(client, rp, carol.email, scope="openid email"))
    assert "id_token" not in issued


def test_one_login_one_sid(client, rp, carol, storage):
    """Two authorizations in one login name the same session; a new login, a new one."""
    other = make_client(storage, name="Second party", scope=OIDC_SCOPES)
    first = code_flow(client, rp, carol, scope="openid")
    second = code_flow(client, other, carol, scope="openid")
    sid = decode_id_token(client, first["id_token"], rp.client_id)["sid"]
    assert decode_id_token(client, second["id_token"], other.client_id)["sid"] == sid

    client.cookies.clear()  # a new browser: a new login
    third = code_flow(client, rp, carol, scope="openid")
    assert decode_id_token(client, third["id_token"], rp.client_id)["sid"] != sid


# --- §12.2: refresh ------------------------------------------------------------------------------


def test_refresh_returns_a_fresh_id_token_of_the_same_login(client, config, rp, carol):
    first = code_flow(client, rp, carol, scope="openid email", nonce="abc")
    before = decode_id_token(client, first["id_token"], rp.client_id)

    again = tokens(refresh(client, rp, first["refresh_token"]))

    after = decode_id_token(client, again["id_token"], rp.client_id)
    assert again["id_token"] != first["id_token"]
    for claim in ("sub", "auth_time", "sid", "aud", "amr", "email"):
        assert after[claim] == before[claim], claim
    assert "nonce" not in after  # the nonce belongs to the authentication request
    alg = jwt.get_unverified_header(again["id_token"])["alg"]
    assert after["at_hash"] == at_hash(again["access_token"], alg)


def test_refresh_narrowed_without_openid_has_no_id_token(client, rp, carol):
    first = code_flow(client, rp, carol, scope="openid orders:read")
    assert "id_token" not in tokens(
        refresh(client, rp, first["refresh_token"], scope="orders:read")
    )


# --- §3.1.2.1: the nonce -------------------------------------------------------------------------


def test_nonce_of_255_characters_is_echoed(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="openid", nonce="n" * 255)
    assert decode_id_token(client, issued["id_token"], rp.client_id)["nonce"] == "n" * 255


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_nonce_too_long_is_invalid_request(client, rp, carol, method):
    url = authorize_url(rp, scope="openid", nonce="n" * 256, state="s-1")
    response = client.request(method, url)
    params = redirect_params(response)
    assert params["error"] == "invalid_request"
    assert "nonce" in params["error_description"]
    assert (params["state"], params["iss"]) == ("s-1", ISSUER)
    assert "code" not in params


@pytest.mark.parametrize("nonce", ["a\x00b", "caf\u00e9", "line\nbreak"])
def test_nonce_must_be_printable_ascii(client, rp, carol, nonce):
    """Stored with the code (PostgreSQL text holds no NUL) and echoed into the ID token."""
    response = client.get(authorize_url(rp, scope="openid", nonce=nonce))
    assert response.status_code == 400
    assert "nonce" in response.text


# --- an ID token is no access token, an access token no ID token -------------------------------


@pytest.fixture
def openid_route(config: Config) -> Config:
    route = RouteConfig(path="/orders", upstream=CLOSED_PORT, scopes=(("openid",),))
    return dataclasses.replace(config, routes=(route,))


def test_id_token_is_refused_as_a_bearer_token(client, openid_route, rp, carol, resource_server):
    issued = code_flow(client, rp, carol, scope=OIDC_SCOPES)
    id_token, access_token = issued["id_token"], issued["access_token"]

    assert_bearer_error(bearer(client, USERINFO, id_token), 401, "invalid_token")
    assert_bearer_error(bearer(client, USERINFO, id_token, "POST"), 401, "invalid_token")
    assert_bearer_error(bearer(client, ME, id_token), 401, "invalid_token")
    assert introspect(client, resource_server, id_token) == {"active": False}
    with running(openid_route) as proxy:
        refused = bearer(proxy, "/orders", id_token)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        # the access token of the same response passes the same door (and finds no upstream)
        assert bearer(proxy, "/orders", access_token).status_code == 502


def test_access_token_is_no_id_token(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="openid")
    with pytest.raises(jwt.InvalidTokenError):
        decode_id_token(client, issued["access_token"], rp.client_id)
    with pytest.raises(jwt.InvalidAudienceError):  # even ignoring its typ: not for the client
        jwks = client.get(JWKS).json()["keys"]
        kid = jwt.get_unverified_header(issued["access_token"])["kid"]
        (jwk,) = [k for k in jwks if k["kid"] == kid]
        jwt.decode(
            issued["access_token"], jwt.PyJWK(jwk), algorithms=[jwk["alg"]], audience=rp.client_id
        )


def test_token_of_another_issuer_is_refused(client, config, tmp_path, rp, carol):
    """Signed by keys this gateway never published, or by its own key with another ``iss``."""
    foreign = KeyRing(tmp_path / "foreign")
    create_key(tmp_path / "foreign", config.keys.algorithm)
    foreign.reload_if_changed()
    now = int(time.time())
    claims = {
        "iss": "https://elsewhere.example",
        "sub": carol.id,
        "aud": ISSUER,
        "exp": now + 300,
        "iat": now,
        "jti": "j1",
        "client_id": rp.client_id,
        "scope": "openid profile",
        "email": carol.email,
    }
    own = client.app.gateway.keyring
    for token in (foreign.sign(claims), own.sign(claims)):
        assert_bearer_error(bearer(client, USERINFO, token), 401, "invalid_token")
        assert_bearer_error(bearer(client, ME, token), 401, "invalid_token")


# --- UserInfo (§5.3) and /oauth/me ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_answers_the_granted_claims(client, rp, carol, method):
    issued = code_flow(client, rp, carol, scope="openid profile email")
    response = bearer(client, USERINFO, issued["access_token"], method)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "sub": carol.id,
        "email": "carol@example.com",
        "email_verified": False,
        "name": "Carol Example",
    }
    id_claims = decode_id_token(client, issued["id_token"], rp.client_id)
    assert response.json()["sub"] == id_claims["sub"]  # §5.3.2: MUST match


def test_userinfo_with_openid_alone_answers_sub(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="openid")
    assert bearer(client, USERINFO, issued["access_token"]).json() == {"sub": carol.id}


def test_userinfo_without_openid_is_insufficient_scope(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="profile email")
    response = bearer(client, USERINFO, issued["access_token"])
    assert_bearer_error(response, 403, "insufficient_scope")
    assert 'scope="openid"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="none"),
        pytest.param("Basic YTpi", id="basic"),
        pytest.param("Bearer", id="empty"),
        pytest.param("Bearer not.a.jwt", id="garbage"),
        pytest.param("Bearer " + "a" * 10000, id="huge"),
        pytest.param("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", id="alg-none"),
    ],
)
def test_userinfo_refuses_without_a_valid_token(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get(USERINFO, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.headers["cache-control"] == "no-store"


def test_userinfo_ignores_a_token_in_the_form(client, rp, carol):
    """RFC 6750 §2.1 only, as at the proxy: a token in a body leaks into logs."""
    issued = code_flow(client, rp, carol, scope="openid")
    response = client.post(USERINFO, data={"access_token": issued["access_token"]})
    assert response.status_code == 401


def test_userinfo_refuses_a_client_token_and_a_revoked_one(client, rp, carol):
    own = tokens(token_request(client, rp, grant_type="client_credentials", scope="openid"))
    assert_bearer_error(bearer(client, USERINFO, own["access_token"]), 401, "invalid_token")

    issued = code_flow(client, rp, carol, scope="openid")
    client.post("/oauth/revoke", data={"token": issued["refresh_token"]}, auth=rp.auth)
    assert_bearer_error(bearer(client, USERINFO, issued["access_token"]), 401, "invalid_token")


def test_userinfo_of_a_deleted_user(client, rp, carol, storage):
    issued = code_flow(client, rp, carol, scope="openid")
    with storage.session() as session:
        session.delete(session.get(User, carol.id))
    assert_bearer_error(bearer(client, USERINFO, issued["access_token"]), 401, "invalid_token")


def test_me_answers_id_and_email(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="profile")
    response = bearer(client, ME, issued["access_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"id": carol.id, "email": "carol@example.com"}


def test_me_without_profile_is_insufficient_scope(client, rp, carol):
    issued = code_flow(client, rp, carol, scope="openid email")
    response = bearer(client, ME, issued["access_token"])
    assert_bearer_error(response, 403, "insufficient_scope")
    assert 'scope="profile"' in response.headers["www-authenticate"]


# --- Discovery 1.0 §3 -----------------------------------------------------------------------------


def test_discovery_extends_the_rfc8414_document(client, rp):
    oauth = client.get(METADATA).json()
    response = client.get(DISCOVERY)
    assert response.status_code == 200
    oidc = response.json()

    assert {k: oidc[k] for k in oauth} == oauth  # one source: they never disagree
    assert oidc["issuer"] == ISSUER
    assert oidc["userinfo_endpoint"] == f"{ISSUER}/oauth/userinfo"
    assert oidc["end_session_endpoint"] == f"{ISSUER}/oauth/logout"
    assert (
        oidc["id_token_signing_alg_values_supported"]
        == oauth["access_token_signing_alg_values_supported"]
    )
    assert oidc["subject_types_supported"] == ["public"]
    assert {"openid", "profile", "email"} <= set(oidc["scopes_supported"])
    assert {"sub", "nonce", "at_hash", "sid", "auth_time", "email", "name"} <= set(
        oidc["claims_supported"]
    )
    assert oidc["response_types_supported"] == ["code"]
    assert oidc["response_modes_supported"] == ["query"]
    assert oidc["prompt_values_supported"] == ["none", "login", "consent"]
    assert oidc["claims_parameter_supported"] is False
    assert oidc["request_parameter_supported"] is False
    assert oidc["request_uri_parameter_supported"] is False  # omitted, it would mean true


def test_openid_scopes_listed_before_any_client_has_them(client):
    scopes = client.get(DISCOVERY).json()["scopes_supported"]
    assert {"openid", "profile", "email"} <= set(scopes)


def test_discovery_is_the_gateways_not_the_upstreams(client, openid_route):
    with running(openid_route) as app:
        assert app.get(DISCOVERY).status_code == 200
        assert app.post(DISCOVERY).status_code == 405


# --- users' names and the session id ----------------------------------------------------------


def test_cli_user_create_with_a_name(gw, storage, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    argv = ("user", "create", "--email", "dan@example.com", "--name", " Dan Q ", "--json")
    code, out, _ = gw(*argv, "--password-stdin")
    assert code == 0
    assert json.loads(out)["name"] == "Dan Q"
    with storage.session() as session:
        assert accounts.find_user(session, "dan@example.com").name == "Dan Q"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "tab\there"])
def test_user_names_are_checked(storage, name):
    with storage.session() as session, pytest.raises(InvalidInput):
        accounts.create_user(session, "eve@example.com", PASSWORD, name)


def test_a_login_cookie_from_before_session_ids_signs_in_again(config):
    codec = SessionCodec(session_secret(config.keys_dir), secure=False)
    session = LoginSession.anonymous().logged_in("u1")
    assert session.sid and codec.loads(codec.dumps(session)) == session
    assert codec.loads(codec.dumps(dataclasses.replace(session, sid=None))) is None
