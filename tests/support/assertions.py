"""Client assertions (RFC 7523) and the keys they are signed with, made with joserfc (and,
for what joserfc will not sign, by hand with cryptography), never with the gateway's code."""

from __future__ import annotations

import base64
import json
import secrets
import time
import warnings
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from gateway import accounts
from gateway.storage import Storage
from tests.support.app import ISSUER, Registered

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = f"{ISSUER}/oauth/token"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """A key pair of one algorithm, with a ``kid``."""

    def __init__(self, alg: str = "ES256", kid: str | None = "k1") -> None:
        self.alg = alg
        self.kid = kid
        if alg == "ES256":
            self.key: Any = ECKey.generate_key("P-256")
        elif alg == "EdDSA":
            self.key = OKPKey.generate_key("Ed25519")
        else:
            self.key = RSAKey.generate_key(2048)

    def jwk(self, private: bool = False, **members: Any) -> dict[str, Any]:
        jwk = dict(self.key.as_dict(private=private))
        if self.kid is not None:
            jwk["kid"] = self.kid
        jwk.update(members)
        return jwk

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        head: dict[str, Any] = {"alg": self.alg, **header}
        if self.kid is not None:
            head.setdefault("kid", self.kid)
        head = {k: v for k, v in head.items() if v is not None}
        with warnings.catch_warnings():  # joserfc 1.8 calls the name EdDSA deprecated
            warnings.simplefilter("ignore")
            return jwt.encode(head, claims, self.key, algorithms=[head["alg"]])

    def assertion(self, client_id: str, **changes: Any) -> str:
        """A valid assertion for ``client_id``; ``changes`` replace (None: drop) claims, and
        ``header`` replaces header members."""
        header = changes.pop("header", {})
        return self.sign(claims(client_id, **changes), **header)


def jwks(*signers: Signer) -> dict[str, Any]:
    return {"keys": [s.jwk() for s in signers]}


def claims(client_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    made = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "exp": now + 60,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
    }
    made.update(changes)
    return {k: v for k, v in made.items() if v is not None}


def unsigned(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    """A JWS put together by hand: for what no library will sign (``none``)."""
    return ".".join(
        (
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(body).encode()),
            b64url(signature),
        )
    )


def form(assertion: str, **extra: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, **extra}


def key_client(
    storage: Storage,
    *,
    keys: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token", "client_credentials"),
    scope: str = "orders:read orders:write profile",
    can_introspect: bool = False,
) -> Registered:
    """A ``private_key_jwt`` client with the JWK Set ``keys`` or its ``jwks_uri``."""
    with storage.session() as session:
        new = accounts.create_client(
            session,
            "Key app",
            ["http://127.0.0.1:9999/callback"],
            list(grant_types),
            scope,
            "private_key_jwt",
            can_introspect,
            jwks=keys,
            jwks_uri=jwks_uri,
        )
    return Registered(new.client.client_id, None, new.client)
