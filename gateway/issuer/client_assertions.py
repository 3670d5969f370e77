"""``private_key_jwt``: a client authenticates with a JWT it signed with one of its keys
(RFC 7523 §2.2 and §3, OpenID Connect Core §9), at the token, PAR, introspection and revocation
endpoints alike.

``ClientAssertions.verify`` makes the checks, in this order; the first that fails refuses the
assertion, and the client sees only the one fixed ``invalid_client`` answer
(``gateway.issuer.clientauth``); the reason (one word) goes to the log:

1. a compact JWS of at most ``MAX_ASSERTION_LENGTH`` characters, its header a JSON object
   without ``crit``, its ``alg`` one of ``PROOF_ALGORITHMS`` (never ``none``, never an HMAC:
   a public key must not be usable as a shared secret), its ``kid`` a string if present;
2. claims: ``iss`` and ``sub`` both the client's id (§3 items 1 and 2); ``aud`` naming this
   server (item 3): the issuer identifier or the token endpoint URL, and at the PAR endpoint
   its own URL too (RFC 9126 §2 asks that); ``exp`` present (item 4), not past (beyond
   ``tokens.leeway``) and at most ``MAX_LIFETIME`` seconds ahead; ``iat`` and ``nbf``, when
   present, not in the future beyond the leeway (item 5); ``jti`` present (item 7);
3. the signature, by the client's key that the header names (``ClientKeys``: with a ``kid``,
   that key; without one, the client's only key for the ``alg``), with the one verifier of
   asymmetric JWS here (``gateway.dpop.verify_signature``);
4. the ``jti`` used once: inserted into ``client_assertion_uses`` in a transaction of its own,
   committed before the endpoint answers, kept until the assertion's ``exp``. The unique
   constraint on (client, ``jti``) decides: of two replicas given the same assertion at once,
   one inserts and the other meets the constraint, a replay.

The ``jti`` is stored only for an assertion whose signature was verified: no one else can fill
the table for a client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import sqlalchemy as sa

from gateway import strict_json
from gateway.config import PROOF_ALGORITHMS
from gateway.dpop import b64url_decode, verify_signature
from gateway.issuer.client_keys import ClientKeys
from gateway.models import ClientAssertionUse
from gateway.storage import Storage

#: RFC 7523 §2.2
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: an assertion signed with a 8192-bit RSA key and a generous set of claims fits
MAX_ASSERTION_LENGTH = 16384
#: how far ahead an assertion's ``exp`` may be: it is made for one request
MAX_LIFETIME = 300
#: the ``client_assertion_uses.jti`` column's size
MAX_JTI_LENGTH = 255
#: the endpoint name the PAR endpoint authenticates clients as (``authenticate_client``)
PAR_ENDPOINT = "pushed_authorization"

uses = cast(sa.Table, ClientAssertionUse.__table__)
log = logging.getLogger("gateway.issuer")


class AssertionRefused(Exception):
    """Why an assertion was refused, as one word (for the log, never for the client)."""


def _number(value: Any) -> float | None:
    """``value`` as a JSON number of seconds, or None (a boolean is no number here)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _storable(text: str) -> bool:
    """Whether the database can hold ``text``: no NUL (PostgreSQL), no lone surrogate (which
    JSON can spell, UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def unverified_subject(assertion: str) -> str | None:
    """The ``sub`` of ``assertion`` when it equals its ``iss``, read before anything is
    verified: it only names the client whose keys will verify it; None if there is none."""
    parts = assertion.split(".")
    if len(assertion) > MAX_ASSERTION_LENGTH or len(parts) != 3:
        return None
    try:
        claims = strict_json.loads(b64url_decode(parts[1]))
    except ValueError:
        return None
    if not isinstance(claims, dict):
        return None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or claims.get("iss") != sub or not _storable(sub):
        return None
    return sub


class ClientAssertions:
    """The checks above for one issuer. ``clock``: seconds since the epoch."""

    def __init__(
        self,
        storage: Storage,
        keys: ClientKeys,
        issuer: str,
        leeway: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.keys = keys
        base = issuer.rstrip("/")
        self.audiences = frozenset({issuer, f"{base}/oauth/token"})
        self.par_audience = f"{base}/oauth/par"
        self.leeway = leeway
        self.clock = clock

    def accepts(self, client: Any, assertion: str, endpoint: str) -> bool:
        """Whether ``assertion`` authenticates ``client`` at ``endpoint``; its ``jti`` is
        then used up. A refusal is logged with its reason."""
        try:
            self.verify(client, assertion, endpoint)
        except AssertionRefused as refused:
            log.info("client assertion refused (%s) for client %s", refused, client.client_id)
            return False
        return True

    def verify(self, client: Any, assertion: str, endpoint: str) -> None:
        """Raise ``AssertionRefused`` unless ``assertion`` authenticates ``client``."""
        if len(assertion) > MAX_ASSERTION_LENGTH:
            raise AssertionRefused("too_long")
        parts = assertion.split(".")
        if len(parts) != 3:
            raise AssertionRefused("malformed")
        head, body, sig = parts
        try:
            header = strict_json.loads(b64url_decode(head))
            claims = strict_json.loads(b64url_decode(body))
            signature = b64url_decode(sig)
        except ValueError:
            raise AssertionRefused("malformed") from None
        if not isinstance(header, dict) or not isinstance(claims, dict) or "crit" in header:
            raise AssertionRefused("malformed")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in PROOF_ALGORITHMS:
            raise AssertionRefused("algorithm")
        if kid is not None and not isinstance(kid, str):
            raise AssertionRefused("malformed")
        exp = self._check_claims(claims, client.client_id, endpoint)
        key = self.keys.key(client, alg, kid)
        if key is None:
            raise AssertionRefused("unknown_key")
        if not verify_signature(alg, key, signature, f"{head}.{body}".encode("ascii")):
            raise AssertionRefused("signature")
        self._use(client.client_id, claims["jti"], exp)

    def _check_claims(self, claims: dict[str, Any], client_id: str, endpoint: str) -> float:
        """RFC 7523 §3's claims; the assertion's ``exp``."""
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise AssertionRefused("issuer")
        aud = claims.get("aud")
        named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        accepted = self.audiences
        if endpoint == PAR_ENDPOINT:
            accepted = accepted | {self.par_audience}
        if not any(isinstance(a, str) and a in accepted for a in named):
            raise AssertionRefused("audience")
        now = self.clock()
        exp = _number(claims.get("exp"))
        if exp is None:
            raise AssertionRefused("no_expiry")
        if exp + self.leeway <= now:
            raise AssertionRefused("expired")
        if exp > now + MAX_LIFETIME:
            raise AssertionRefused("lifetime")
        for name in ("iat", "nbf"):
            value = _number(claims.get(name, now))
            if value is None or value > now + self.leeway:
                raise AssertionRefused("not_yet_valid")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH or not _storable(jti):
            raise AssertionRefused("no_jti")
        return exp

    def _use(self, client_id: str, jti: str, exp: float) -> None:
        """Insert the ``jti`` in a transaction of its own; a unique violation is a replay."""
        try:
            with self.storage.writing() as conn:
                conn.execute(
                    sa.insert(uses).values(
                        client_id=client_id, jti=jti, expires_at=exp + self.leeway
                    )
                )
        except sa.exc.IntegrityError:
            raise AssertionRefused("replayed") from None
