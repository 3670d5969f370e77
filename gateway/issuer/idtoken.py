"""OpenID Connect ID tokens (OpenID Connect Core 1.0 §2, §3.1.3.6, §12.2).

Built here with the key ring rather than with Authlib's ``OpenIDCode``: that extension signs
with ``authlib.jose`` under a key of its own choosing, reads the nonce and auth time back from
the code alone and issues nothing on refresh, while our keys live in the ``KeyRing`` (joserfc)
and a refresh must repeat the login's ``sid`` and ``auth_time``. The header's ``typ`` is
"JWT", never "at+jwt": the bearer validator refuses an ID token (RFC 9068 §2.1, RFC 8725 §3.11),
and its audience is a client, not a resource.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Set as AbstractSet
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from gateway.issuer.principal import Principal
from gateway.keys import KeyRing, jws_registry
from gateway.models import Client, User

#: §3.1.2.1 leaves the length open; it is echoed into every ID token of the grant
MAX_NONCE_LENGTH = 255
ID_TOKEN_TYPE = "JWT"
#: an ``id_token_hint`` longer than this is no ID token of ours (they are well under 2 KiB)
MAX_HINT_LENGTH = 8192
#: the scopes OpenID Connect defines that we serve (Core §5.4: ``email`` and ``profile``'s
#: ``name``): discovery lists them even before a client is registered with them
OIDC_SCOPES = frozenset({"openid", "profile", "email"})
#: every claim an ID token or UserInfo response of ours may hold (Discovery §3)
CLAIMS_SUPPORTED = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "sid",
    "amr",
    "email",
    "email_verified",
    "name",
]
#: the hash whose left half is ``at_hash`` (§3.1.3.6): the JWS alg's; Ed25519 signs with SHA-512
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def at_hash(access_token: str, alg: str) -> str:
    """§3.1.3.6: "the base64url encoding of the left-most half of the hash of the octets of the
    ASCII representation of the access_token value, where the hash algorithm used is the hash
    algorithm used in the alg Header Parameter of the ID Token's JOSE Header"."""
    hash_ = hashlib.sha512 if alg in ("EdDSA", "Ed25519") else _HASHES[alg[-3:]]
    digest = hash_(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def user_claims(user: User, scopes: AbstractSet[str]) -> dict[str, Any]:
    """The standard claims (§5.1) that ``scopes`` release about ``user``, ``sub`` included.
    The gateway never verifies an address (an operator types it in), hence
    ``email_verified: false``."""
    claims: dict[str, Any] = {"sub": user.subject}
    if "email" in scopes:
        claims.update(email=user.email, email_verified=False)
    if "profile" in scopes and user.name:
        claims["name"] = user.name
    return claims


def id_token(
    keyring: KeyRing,
    issuer: str,
    client: Client,
    principal: Principal,
    scopes: AbstractSet[str],
    access_token: str,
    now: int,
    ttl: int,
) -> str:
    """The ID token issued with ``access_token``, for ``principal``'s browser login."""
    if principal.user is None or principal.session_id is None:
        raise ValueError("an ID token needs a user signed in through the browser")
    key = keyring.active_key
    claims = {
        "iss": issuer,
        **user_claims(principal.user, scopes),
        "aud": client.client_id,
        "exp": now + ttl,
        "iat": now,
        "auth_time": int(principal.auth_time or now),
        "at_hash": at_hash(access_token, key.alg),
        "sid": principal.session_id,
        "amr": ["pwd"],
    }
    if principal.nonce is not None:
        claims["nonce"] = principal.nonce
    return keyring.sign(claims, typ=ID_TOKEN_TYPE, key=key)


def verify_id_token_hint(keyring: KeyRing, issuer: str, token: str) -> dict[str, Any] | None:
    """The claims of ``token`` if it is an ID token this issuer signed with a published key,
    else None. RP-Initiated Logout 1.0 §2: the hint is accepted expired ("The OP need not be
    the one to invalidate the ID Token"), so ``exp`` is not checked; everything else is: the
    key's own algorithm, ``typ`` "JWT" (an access token's ``at+jwt`` or an assertion's type is
    not an ID token), our ``iss``, and a single-string ``aud``, a ``sub`` and a ``sid``."""
    if not token or len(token) > MAX_HINT_LENGTH or token.count(".") != 2 or not token.isascii():
        return None
    try:
        header = jws.extract_compact(token.encode("ascii")).headers()
    except (JoseError, ValueError, UnicodeError):
        return None
    kid = header.get("kid")
    key = keyring.by_kid.get(kid) if isinstance(kid, str) else None
    if key is None or header.get("alg") != key.alg or header.get("crit"):
        return None
    if header.get("typ") != ID_TOKEN_TYPE:
        return None
    try:
        verified = jws.deserialize_compact(token, key.key, registry=jws_registry(key.alg))
        claims = json.loads(verified.payload)
    except (JoseError, ValueError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != issuer:
        return None
    if not all(
        isinstance(claims.get(name), str) and claims[name] for name in ("aud", "sub", "sid")
    ):
        return None
    return claims
