"""Case tables shared by the proxy's own tests and the decision endpoint's equivalence test
(tests/proxy/test_decisions.py), so that the two doors are held to every case of one list."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from joserfc import jwt as jose_jwt

from gateway.keys import KeyRing, create_key
from tests.support.proxy import AUDIENCE, claims

#: where the tests' default resource (``tokens.audience``) publishes its metadata (RFC 9728)
METADATA = f"{AUDIENCE}/.well-known/oauth-protected-resource"
#: the default identity headers and the assertion's, lower-case
IDENTITY = (
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-client-id",
    "x-forwarded-scopes",
    "x-gateway-assertion",
)


def challenge(*params: tuple[str, str | None]) -> str:
    """``Bearer realm="gateway", name="value", ...``, the params whose value is None left out."""
    pairs = (("realm", "gateway"), *params)
    return "Bearer " + ", ".join(f'{name}="{value}"' for name, value in pairs if value is not None)


def bare(scope: str | None = None, metadata: str | None = METADATA) -> str:
    """A 401 for no token (RFC 6750 §3.1: no error), saying what to ask for and where."""
    return challenge(("scope", scope), ("resource_metadata", metadata))


def invalid(description: str, scope: str | None = None, metadata: str | None = METADATA) -> str:
    return challenge(
        ("error", "invalid_token"),
        ("error_description", description),
        ("scope", scope),
        ("resource_metadata", metadata),
    )


def insufficient(scope: str, metadata: str | None = METADATA) -> str:
    return challenge(
        ("error", "insufficient_scope"), ("scope", scope), ("resource_metadata", metadata)
    )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def alg_none(keyring: KeyRing, _: Path) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": keyring.active_key.kid}
    return f"{b64(header)}.{b64(claims())}."


def hs256(keyring: KeyRing, _: Path) -> str:
    headers = {"typ": "at+jwt", "kid": keyring.active_key.kid}
    return pyjwt.encode(claims(), "a-shared-secret-of-32-bytes-long!", "HS256", headers)


def foreign_kid(_: KeyRing, tmp_path: Path) -> str:
    create_key(tmp_path / "other", "RS256")
    return KeyRing(tmp_path / "other").sign(claims())


def wrong_typ(keyring: KeyRing, _: Path) -> str:
    key = keyring.active_key
    return jose_jwt.encode({"alg": key.alg, "kid": key.kid, "typ": "JWT"}, claims(), key.key)


def signed(**overrides: Any) -> Callable[[KeyRing, Path], str]:
    return lambda keyring, _: keyring.sign(claims(**overrides))


#: (make a token, the 401's error_description)
INVALID_TOKENS = [
    pytest.param(alg_none, "unexpected algorithm", id="alg-none"),
    pytest.param(hs256, "unexpected algorithm", id="hs256"),
    pytest.param(foreign_kid, "unknown signing key", id="wrong-kid"),
    pytest.param(wrong_typ, "not an access token", id="wrong-typ"),
    pytest.param(signed(exp=int(time.time()) - 60), "token expired", id="expired"),
    pytest.param(signed(aud="https://elsewhere.test"), "wrong audience", id="wrong-aud"),
    pytest.param(signed(iss="https://evil.test"), "wrong issuer", id="wrong-iss"),
    pytest.param(lambda *_: "not.a.jwt", "malformed token", id="garbage"),
]

#: path tricks, refused before any route is matched
TRICKS = [
    pytest.param("/orders/../admin", id="dot-dot"),
    pytest.param("/orders/..", id="trailing-dot-dot"),
    pytest.param("/orders/%2e%2e/admin", id="encoded-dot-dot"),
    pytest.param("/orders/.%2E/admin", id="half-encoded-dot-dot"),
    pytest.param("/orders/./admin", id="dot"),
    pytest.param("/orders/%2e/admin", id="encoded-dot"),
    pytest.param("/orders%2Fx", id="encoded-slash"),
    pytest.param("/orders%2fx", id="encoded-slash-lower"),
    pytest.param("/orders%5Cx", id="encoded-backslash"),
    pytest.param("/orders\\x", id="backslash"),
    pytest.param("/orders/%00", id="nul"),
    pytest.param("/orders/%0d%0aX-Injected:%201", id="crlf"),
    pytest.param("//orders", id="double-slash-start"),
    pytest.param("/orders//x", id="double-slash"),
    pytest.param("/orders/%252e%252e/admin", id="double-encoded-dot-dot"),
    pytest.param("/orders/%ff", id="not-utf8"),
    # issue 15 §5: a segment cut at its first ";" (Tomcat's path parameters) is "..", "." or empty
    pytest.param("/orders/..;/admin", id="dot-dot-parameter"),
    pytest.param("/orders/..;jsessionid=1/admin", id="dot-dot-named-parameter"),
    pytest.param("/orders/.;x/admin", id="dot-parameter"),
    pytest.param("/orders/;x/admin", id="empty-parameter"),
    pytest.param("/orders/..;", id="trailing-dot-dot-parameter"),
    pytest.param("/orders/%2e%2e;/admin", id="encoded-dot-dot-parameter"),
    pytest.param("/orders/..%3b/admin", id="dot-dot-encoded-semicolon"),
    pytest.param("/orders/.%2E%3B/admin", id="all-encoded-dot-dot-parameter"),
    pytest.param("*", id="asterisk-form"),
]

SCOPE_ALL = 'scopes = ["a", "b"]'
SCOPE_ANY = 'scopes = [["a", "b"], ["admin"]]'

#: (the route's scope rule, the token's scope, the proxy's status)
SCOPE_MATRIX = [
    pytest.param(SCOPE_ALL, "a b", 200, id="all-of-held"),
    pytest.param(SCOPE_ALL, "b a extra", 200, id="all-of-superset"),
    pytest.param(SCOPE_ALL, "a", 403, id="all-of-partial"),
    pytest.param(SCOPE_ALL, "", 403, id="all-of-none"),
    pytest.param(SCOPE_ANY, "a b", 200, id="any-of-first"),
    pytest.param(SCOPE_ANY, "admin", 200, id="any-of-second"),
    pytest.param(SCOPE_ANY, "b", 403, id="any-of-partial"),
    pytest.param(SCOPE_ANY, "ab", 403, id="any-of-not-substring"),
    pytest.param("", "", 200, id="no-scopes-valid-token"),
    pytest.param("public = true", "", 200, id="public"),
]
