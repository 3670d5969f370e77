"""RFC 9068 access-token validation, shared by the proxy and the introspection endpoint.

Every JOSE failure becomes ``InvalidToken`` here, with a short generic description: callers
never see a joserfc exception.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from joserfc import jws
from joserfc.errors import JoseError

from gateway.errors import InvalidToken
from gateway.introspect.revocation import RevocationCache
from gateway.keys import KeyRing, jws_registry

#: RFC 9068 §4: "at+jwt"; the media-type form is accepted too (RFC 7515 §4.1.9)
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_TOKEN_LENGTH = 8192
#: distinct tokens whose verified signature is remembered (about 1 KiB each)
VERIFIED_CACHE_SIZE = 8192


@dataclass(slots=True, eq=False)
class AccessToken:
    """A token whose signature and claim shapes were checked: built once per token and
    remembered with its signature, while its times, audience and revocation are checked again
    on every use (``BearerValidator.validate``)."""

    sub: str
    client_id: str
    scopes: frozenset[str]
    jti: str
    exp: int
    iat: int
    aud: tuple[str, ...]
    sid: str | None = None
    email: str | None = None
    #: RFC 9449 §6.1 ``cnf.jkt``: the thumbprint of the key the token is bound to (DPoP);
    #: None for a bearer token
    jkt: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    #: the raw ``exp``, and ``max(iat, nbf)``: the time checks' operands, as signed
    expires_at: float = 0.0
    valid_from: float = 0.0
    #: what a consumer derived from the token once (the proxy: its identity headers, keyed by
    #: the policy that built them); never part of a decision
    derived: tuple[object, Any] | None = field(default=None, repr=False)

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))

    @property
    def is_user_token(self) -> bool:
        """Issued for a user (every user's token carries ``auth_time``), not a client's own
        (client_credentials): ``email`` cannot tell, a user's token has it only for some scopes."""
        return "auth_time" in self.claims


class BearerValidator:
    def __init__(
        self, keyring: KeyRing, revocations: RevocationCache, issuer: str, leeway: int = 30
    ) -> None:
        self.keyring = keyring
        self.revocations = revocations
        self.issuer = issuer
        self.leeway = leeway
        # token -> (kid, token) of signatures already checked: a client sends one token many
        # times, and the signature check is most of the cost of a proxied request. Times, the
        # audience and revocation are still checked on every use; a retired kid misses.
        self._verified: dict[str, tuple[str, AccessToken]] = {}

    def validate(self, token: str, audience: str | None) -> AccessToken:
        """Check signature, header, claims and revocation; ``audience=None`` skips ``aud``."""
        hit = self._verified.get(token)
        if hit is not None and hit[0] in self.keyring.by_kid:
            access = hit[1]
        else:
            kid, claims = self._verify(token)
            access = _access_token(claims)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()  # rare; cheaper and thread-safer than LRU bookkeeping
            self._verified[token] = (kid, access)
        now = time.time()
        if access.expires_at + self.leeway <= now:
            raise InvalidToken("token expired")
        if access.valid_from - self.leeway > now:
            raise InvalidToken("token not yet valid")
        if audience is not None and audience not in access.aud:
            raise InvalidToken("wrong audience")
        if self.revocations.is_revoked(access.jti, access.sid, access.sub, access.iat):
            raise InvalidToken("token revoked")
        return access

    def verify_signature(self, token: str) -> dict[str, Any]:
        """The claims of a token this gateway signed with a published key (times unchecked)."""
        return self._verify(token)[1]

    def _verify(self, token: str) -> tuple[str, dict[str, Any]]:
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("malformed token")
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError):
            raise InvalidToken("malformed token") from None
        kid = header.get("kid")
        key = self.keyring.by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown signing key")
        # the key decides the algorithm: never "none", never HS*, never a downgrade
        if header.get("alg") != key.alg:
            raise InvalidToken("unexpected algorithm")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("not an access token")
        if header.get("crit"):
            raise InvalidToken("unsupported critical header")
        try:
            verified = jws.deserialize_compact(token, key.key, registry=jws_registry(key.alg))
        except JoseError:
            raise InvalidToken("bad signature") from None
        try:
            claims = json.loads(verified.payload)
        except ValueError:
            raise InvalidToken("malformed token") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed token")
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        return key.kid, claims


def _access_token(claims: dict[str, Any]) -> AccessToken:
    """The claims' shapes checked once (RFC 9068 §2.2); times and audience are per use."""
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
    if not (_is_number(exp) and _is_number(iat) and _is_number(nbf)):
        raise InvalidToken("malformed time claims")
    aud = claims.get("aud")
    auds = (aud,) if isinstance(aud, str) else aud
    if not isinstance(auds, list | tuple) or not all(isinstance(a, str) for a in auds):
        raise InvalidToken("malformed audience")
    sub, client_id, jti = claims.get("sub"), claims.get("client_id"), claims.get("jti")
    scope = claims.get("scope", "")
    sid, email = claims.get("sid"), claims.get("email")
    if not (_is_text(sub) and _is_text(client_id) and _is_text(jti)):
        raise InvalidToken("missing claims")
    if not isinstance(scope, str) or not all(v is None or isinstance(v, str) for v in (sid, email)):
        raise InvalidToken("malformed claims")
    cnf = claims.get("cnf")
    jkt = None
    if cnf is not None:
        # a confirmation this gateway cannot check (RFC 7800: x5t#S256, jwk ...) makes no
        # bearer token of it: only a jkt it can hold a proof to is accepted
        jkt = cnf.get("jkt") if isinstance(cnf, dict) and len(cnf) == 1 else None
        if not _is_text(jkt):
            raise InvalidToken("malformed claims")
    return AccessToken(
        sub=sub,
        client_id=client_id,
        scopes=frozenset(scope.split()),
        jti=jti,
        exp=int(exp),
        iat=int(iat),
        aud=tuple(auds),
        sid=sid,
        email=email,
        jkt=jkt,
        claims=claims,
        expires_at=exp,
        valid_from=max(iat, nbf),
    )


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)
