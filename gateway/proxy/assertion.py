"""The signed identity assertion: who the caller is, as a JWS an upstream can verify.

Identity headers are only as trustworthy as the network between the gateway and the upstream.
With ``[proxy.assertion] enabled``, every allowed request to a non-public route also carries
a JWT signed by the gateway's active key (the same JWKS as its access tokens) with
``typ: "assertion+jwt"``, so it can never be taken for an access token, nor an access token for
it (RFC 8725 §3.11: explicit typing). Claims: ``iss``, ``aud`` (the route's
``assertion_audience``), ``sub``, ``email`` (when the token names one), ``client_id``,
``scope``, ``iat``, ``exp`` (``now + ttl``, never past the access token's ``exp``), ``jti``,
``at_jti`` (the access token's, for audit) and, for a DPoP-bound token, its ``cnf`` (RFC 7800:
the upstream learns that the caller proved the key, and which one).

A signature (RS256 above all) costs far more than the rest of a request, so an assertion is
remembered per (access token, audience) and served again until shortly before its ``exp``.
The cache is consulted only for a token that has just passed validation, revocation
included: a revoked token's assertion is never served; a retired key's assertions miss.
"""

from __future__ import annotations

import time

from gateway.config import AssertionConfig
from gateway.introspect.validator import AccessToken
from gateway.keys import KeyRing
from gateway.models import new_id

ASSERTION_TYPE = "assertion+jwt"
#: distinct (token, audience) pairs whose assertion is remembered (each about a token's size)
CACHE_SIZE = 8192
#: a cached assertion is signed again this long before its exp (at most a quarter of the ttl)
REFRESH_BEFORE = 5.0


class AssertionSigner:
    def __init__(self, keyring: KeyRing, issuer: str, config: AssertionConfig) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._ttl = config.ttl
        self._refresh_before = min(REFRESH_BEFORE, config.ttl / 4)
        #: (access token jti, audience) -> (assertion, time to sign again, kid that signed it)
        self._cache: dict[tuple[str, str], tuple[bytes, float, str]] = {}

    def assertion(self, token: AccessToken, audience: str) -> bytes:
        """The assertion for a validated ``token`` at ``audience``, signed at most once per
        ``ttl`` (less the refresh margin) while the signing key stays published."""
        key = (token.jti, audience)
        now = time.time()
        hit = self._cache.get(key)
        if hit is not None and now < hit[1] and hit[2] in self._keyring.by_kid:
            return hit[0]
        signing = self._keyring.active_key
        exp = min(int(now + self._ttl), int(token.expires_at))
        claims = {
            "iss": self._issuer,
            "aud": audience,
            "sub": token.sub,
            "client_id": token.client_id,
            "scope": token.claims.get("scope", ""),
            "iat": int(now),
            "exp": exp,
            "jti": new_id(),
            "at_jti": token.jti,
        }
        if token.email:
            claims["email"] = token.email
        if token.jkt is not None:
            claims["cnf"] = {"jkt": token.jkt}
        assertion = self._keyring.sign(claims, ASSERTION_TYPE).encode("ascii")
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()  # rare; as the validator's cache
        self._cache[key] = (assertion, exp - self._refresh_before, signing.kid)
        return assertion
