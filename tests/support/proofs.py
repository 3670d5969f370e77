"""DPoP proofs (RFC 9449 §4.2) as a client makes them, with joserfc: never with the gateway's
own code, which is what the tests check."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey


def token_hash(token: str) -> str:
    """``ath``: base64url(SHA-256(token))."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class ProofKey:
    """A client's ES256 key pair and the proofs it signs."""

    def __init__(self) -> None:
        self.alg = "ES256"
        self.key = ECKey.generate_key("P-256")
        #: RFC 7638 thumbprint: what a bound token's ``cnf.jkt`` names
        self.jkt = self.key.thumbprint()

    @property
    def cnf(self) -> dict[str, str]:
        return {"jkt": self.jkt}

    def proof(
        self,
        method: str,
        url: str,
        token: str | None = None,
        *,
        iat: float | None = None,
        nonce: str | None = None,
        **claims: Any,
    ) -> str:
        """A proof for ``method`` ``url`` (and ``token``'s ``ath``); ``claims`` override or,
        as None, remove claims."""
        body: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": url,
            "iat": int(time.time() if iat is None else iat),
        }
        if token is not None:
            body["ath"] = token_hash(token)
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False)}
        return jwt.encode(header, body, self.key, algorithms=[self.alg])

    def headers(self, token: str, method: str, url: str, **kw: Any) -> dict[str, str]:
        """``Authorization: DPoP <token>`` and its proof."""
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof(method, url, token, **kw)}
