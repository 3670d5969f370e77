"""DPoP proofs (RFC 9449 §4.2) made the way a client makes them, with joserfc, never with the
gateway's own code: a key of each accepted algorithm, proofs for a request, and the raw
pieces (header, claims, signature) for proofs that must be wrong in one way."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
import warnings
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey
from starlette.testclient import TestClient

from tests.support.app import ISSUER, Registered

ALGORITHMS = ("ES256", "EdDSA", "PS256", "RS256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def ath(access_token: str) -> str:
    """RFC 9449 §4.2: base64url of the SHA-256 of the token's ASCII, computed here."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def new_key(alg: str, rsa_bits: int = 2048) -> Any:
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519")
    with warnings.catch_warnings():
        # a key below 2048 bits is what some tests must make, to see it refused
        warnings.simplefilter("ignore", SecurityWarning)
        return RSAKey.import_key(rsa.generate_private_key(65537, rsa_bits))


class ProofKey:
    """A client's DPoP key pair and the proofs it makes."""

    def __init__(self, alg: str = "ES256", key: Any = None) -> None:
        self.alg = alg
        self.key = key if key is not None else new_key(alg)

    @property
    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = self.key.as_dict(private=False)
        return public

    @property
    def jkt(self) -> str:
        """RFC 7638 SHA-256 thumbprint, by joserfc."""
        thumbprint: str = self.key.thumbprint()
        return thumbprint

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        header.update(changes)
        return {k: v for k, v in header.items() if v is not None}

    def claims(
        self,
        htu: str,
        htm: str = "POST",
        *,
        iat: float | None = None,
        jti: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        claims = {
            "jti": jti or str(uuid.uuid4()),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time()) if iat is None else iat,
            **extra,
        }
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, header: dict[str, Any], payload: bytes) -> str:
        """A compact JWS of ``payload`` under ``header``, signed with joserfc."""
        with warnings.catch_warnings():
            # joserfc 1.8 deprecates the name "EdDSA" (RFC 9864), which RFC 9449 proofs still
            # use; and a short RSA key is what some tests must sign with
            warnings.simplefilter("ignore", SecurityWarning)
            token: str = jws.serialize_compact(header, payload, self.key, algorithms=[self.alg])
        return token

    def sign_raw(self, header: Any, claims: Any) -> str:
        """ES256 by cryptography over any header and claims (JSON values), for what joserfc
        will not sign (a ``crit`` it does not know, a header that is not an object)."""
        assert self.alg == "ES256"
        signing_input = f"{b64json(header)}.{b64json(claims)}"
        der = self.key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def proof(
        self,
        htu: str,
        htm: str = "POST",
        *,
        header: dict[str, Any] | None = None,
        access_token: str | None = None,
        **claims: Any,
    ) -> str:
        """A proof for ``htm htu`` (and ``access_token``): ``claims`` add or replace claims
        (None drops one); ``header`` replaces header members (None drops one)."""
        if access_token is not None:
            claims.setdefault("ath", ath(access_token))
        body = self.claims(htu, htm, **claims)
        return self.sign(self.header(**(header or {})), json.dumps(body).encode())


# --- at the token endpoint ---------------------------------------------------------------------

#: the token endpoint's URL as discovery publishes it, the ``htu`` of every token request's proof
TOKEN_URL = ISSUER + "/oauth/token"


def with_proof(
    client: TestClient,
    registered: Registered | None,
    key: ProofKey | None,
    **form: str,
) -> httpx.Response:
    """POST /oauth/token as ``token_request`` does, with a fresh proof by ``key`` (if any)."""
    auth = None
    if registered is not None:
        if registered.client_secret:
            auth = registered.auth
        else:
            form.setdefault("client_id", registered.client_id)
    headers = {} if key is None else {"DPoP": key.proof(TOKEN_URL)}
    return client.post("/oauth/token", data=form, auth=auth, headers=headers)


def dpop_error(response: httpx.Response, error: str = "invalid_dpop_proof") -> dict[str, Any]:
    """RFC 9449 §5 / §8: a 400 JSON error, never cached."""
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert set(body) == {"error", "error_description"}, body
    return body
