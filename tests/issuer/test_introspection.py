"""Token introspection (RFC 7662): for resource servers only; ``active`` is false for any token
this gateway would not accept (expired, revoked, malformed, foreign), and otherwise the token's
meta-information (§2.2)."""

from __future__ import annotations

import base64
import json
import time

import pytest
import sqlalchemy as sa
from joserfc import jwt as jose_jwt
from joserfc.jwk import OctKey, RSAKey

from gateway.keys import jws_registry
from gateway.models import RefreshToken
from tests.support.app import ISSUER, make_client
from tests.support.issuer import (
    INTROSPECT,
    decode,
    introspect,
    oauth_error,
    password_grant,
    refresh,
    revoke,
    token_request,
    tokens,
)


@pytest.fixture
def issued(client, user, confidential):
    return tokens(password_grant(client, confidential, scope="orders:read profile"))


def test_active_access_token(client, user, confidential, resource_server, issued):
    response = client.post(
        INTROSPECT, data={"token": issued["access_token"]}, auth=resource_server.auth
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    info = response.json()
    claims = decode(client, issued["access_token"])
    assert info == {
        "active": True,
        "scope": "orders:read profile",
        "client_id": confidential.client_id,
        "sub": user.id,
        "username": user.email,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "iss": ISSUER,
        "aud": ISSUER,
        "jti": claims["jti"],
        "token_type": "Bearer",
    }


def test_active_refresh_token(client, user, confidential, resource_server, issued):
    info = introspect(client, resource_server, issued["refresh_token"])
    assert info["active"] is True
    assert info["token_type"] == "refresh_token"
    assert (info["client_id"], info["sub"], info["username"]) == (
        confidential.client_id,
        user.id,
        user.email,
    )
    assert info["scope"] == "orders:read profile"


def test_client_credentials_token_has_no_username(client, confidential, resource_server):
    access = tokens(token_request(client, confidential, grant_type="client_credentials"))
    info = introspect(client, resource_server, access["access_token"])
    assert info["active"] and info["sub"] == confidential.client_id
    assert "username" not in info


def test_post_authentication_works(client, storage, issued):
    rs = make_client(
        storage,
        name="RS",
        grant_types=("client_credentials",),
        auth_method="client_secret_post",
        can_introspect=True,
    )
    response = client.post(
        INTROSPECT,
        data={
            "token": issued["access_token"],
            "client_id": rs.client_id,
            "client_secret": rs.client_secret,
        },
    )
    assert response.json()["active"] is True


# --- inactive tokens ---------------------------------------------------------------------------


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes):
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "someone",
        "aud": ISSUER,
        "exp": now + 600,
        "iat": now,
        "jti": "j-" + str(now),
        "client_id": "c",
        "scope": "orders:read",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def forge(app, kind: str) -> str:
    """Tokens the gateway must not accept, made with real keys where it matters."""
    ring = app.gateway.keyring
    active = ring.active_key
    now = int(time.time())
    leeway = app.gateway.config.tokens.leeway
    if kind == "expired":
        return ring.sign(_claims(iat=now - 3600, exp=now - leeway - 1))
    if kind == "not-yet-valid":
        return ring.sign(_claims(iat=now + 3600, exp=now + 7200))
    if kind == "other-issuer":
        return ring.sign(_claims(iss="https://evil.example.com"))
    if kind == "no-jti":
        return ring.sign(_claims(jti=None))
    if kind == "foreign-key-same-kid":
        other = RSAKey.generate_key(2048)
        header = {"alg": "RS256", "kid": active.kid, "typ": "at+jwt"}
        return jose_jwt.encode(header, _claims(), other, algorithms=["RS256"])
    if kind == "unknown-kid":
        other = RSAKey.generate_key(2048)
        header = {"alg": "RS256", "kid": "unknown", "typ": "at+jwt"}
        return jose_jwt.encode(header, _claims(), other, algorithms=["RS256"])
    if kind == "alg-none":
        return f"{_b64({'alg': 'none', 'kid': active.kid, 'typ': 'at+jwt'})}.{_b64(_claims())}."
    if kind == "hs256-with-public-key":
        secret = OctKey.import_key(json.dumps(active.public_jwk()).encode())
        header = {"alg": "HS256", "kid": active.kid, "typ": "at+jwt"}
        return jose_jwt.encode(header, _claims(), secret, algorithms=["HS256"])
    if kind == "not-an-access-token":
        header = {"alg": active.alg, "kid": active.kid, "typ": "JWT"}
        return jose_jwt.encode(header, _claims(), active.key, registry=jws_registry(active.alg))
    if kind == "tampered":
        good = ring.sign(_claims())
        head, _, sig = good.split(".")
        return f"{head}.{_b64(_claims(sub='admin'))}.{sig}"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "expired",
        "not-yet-valid",
        "other-issuer",
        "no-jti",
        "foreign-key-same-kid",
        "unknown-kid",
        "alg-none",
        "hs256-with-public-key",
        "not-an-access-token",
        "tampered",
    ],
)
def test_forged_or_stale_tokens_are_inactive(app, client, resource_server, kind):
    assert introspect(client, resource_server, forge(app, kind)) == {"active": False}


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("a.b.c", id="three-parts"),
        pytest.param("....", id="dots"),
        pytest.param("\u2603" * 20, id="unicode"),
        pytest.param("x" * 100_000, id="huge"),
    ],
)
def test_malformed_tokens_are_inactive(client, resource_server, token):
    assert introspect(client, resource_server, token) == {"active": False}


def test_revoked_access_token_is_inactive(client, confidential, resource_server, issued):
    revoke(client, confidential, issued["access_token"])
    assert introspect(client, resource_server, issued["access_token"]) == {"active": False}


def test_revoked_refresh_token_is_inactive(client, confidential, resource_server, issued):
    revoke(client, confidential, issued["refresh_token"])
    assert introspect(client, resource_server, issued["refresh_token"]) == {"active": False}


def test_rotated_refresh_token_is_inactive(client, confidential, resource_server, issued):
    tokens(refresh(client, confidential, issued["refresh_token"]))
    assert introspect(client, resource_server, issued["refresh_token"]) == {"active": False}


def test_expired_refresh_token_is_inactive(client, storage, resource_server, issued):
    with storage.session() as session:
        session.execute(sa.update(RefreshToken).values(expires_at=time.time() - 1))
    assert introspect(client, resource_server, issued["refresh_token"]) == {"active": False}


# --- who may introspect ------------------------------------------------------------------------


def test_clients_without_can_introspect_get_403(client, confidential, issued):
    response = client.post(
        INTROSPECT, data={"token": issued["access_token"]}, auth=confidential.auth
    )
    oauth_error(response, 403, "unauthorized_client")


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(lambda rs: (rs.client_id, "wrong"), id="wrong-secret"),
        pytest.param(lambda rs: ("nobody", "x"), id="unknown-client"),
        pytest.param(lambda rs: None, id="no-auth"),
    ],
)
def test_bad_credentials_get_401(client, resource_server, issued, auth):
    response = client.post(
        INTROSPECT, data={"token": issued["access_token"]}, auth=auth(resource_server)
    )
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


def test_public_clients_cannot_introspect(client, public, issued):
    response = client.post(
        INTROSPECT, data={"token": issued["access_token"], "client_id": public.client_id}
    )
    oauth_error(response, 401, "invalid_client")


def test_missing_token_is_invalid_request(client, resource_server):
    oauth_error(client.post(INTROSPECT, data={}, auth=resource_server.auth), 400, "invalid_request")
