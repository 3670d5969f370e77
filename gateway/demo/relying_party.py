"""The relying party's side of ``gateway demo``'s browser client: its back channel to the
gateway (urllib on a worker thread, no proxies from the environment, bounded bodies) and the
ID token checks of OpenID Connect Core §3.1.3.7, done as any client must do them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.keys import jws_registry

LEEWAY = 30
HTTP_TIMEOUT = 10.0
MAX_BODY = 1_000_000


class SignInFailed(Exception):
    """Shown as an error page: ``title`` is ours, ``detail`` may quote the server or query."""

    def __init__(self, title: str, detail: str = "", status: int = 400) -> None:
        super().__init__(title)
        self.title = title
        self.detail = detail
        self.status = status


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def expected_at_hash(access_token: str, alg: str) -> str:
    """OIDC Core §3.1.3.6, computed by the client itself: the left half of the hash (the JWS
    alg's; SHA-512 for Ed25519) of the access token, base64url."""
    if alg in ("EdDSA", "Ed25519"):
        digest = hashlib.sha512(access_token.encode("ascii")).digest()
    else:
        digest = hashlib.new(f"sha{alg[-3:]}", access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _fetch(url: str, form: dict[str, str] | None, headers: dict[str, str]) -> Answer:
    data = urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with _OPENER.open(request, timeout=HTTP_TIMEOUT) as response:
            return Answer(response.status, response.read(MAX_BODY))
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.read(MAX_BODY))
    except (urllib.error.URLError, OSError) as error:
        raise SignInFailed(f"Cannot reach {url}", str(error), 502) from None


async def fetch(
    url: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> Answer:
    return await asyncio.to_thread(
        _fetch, url, form, {"Accept": "application/json", **(headers or {})}
    )


async def verify_id_token(
    metadata: dict[str, Any], id_token: str, access_token: str, client_id: str, nonce: str
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """OIDC Core §3.1.3.7, as a relying party does it, with keys fetched now: the header,
    the claims, and what was checked (for the page to show)."""
    try:
        header = dict(jws.extract_compact(id_token.encode()).protected)
        alg = str(header.get("alg"))
        if alg not in metadata.get("id_token_signing_alg_values_supported", []):
            raise SignInFailed("The ID token is signed with an algorithm not announced", alg)
        jwks = await fetch(metadata["jwks_uri"])
        keys = KeySet.import_key_set(jwks.json())
        verified = jwt.decode(id_token, keys, registry=jws_registry(alg))
        claims = dict(verified.claims)
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise SignInFailed(
            "The ID token is not valid", f"{type(error).__name__}: {error}"
        ) from None
    if header.get("typ") == "at+jwt":
        raise SignInFailed("An access token was sent as the ID token")
    if isinstance(claims["aud"], list) and claims.get("azp") != client_id:
        raise SignInFailed("The ID token has several audiences and another azp")
    checks = [
        f"signature ({alg}) by key {header.get('kid')} of the live JWKS",
        f"iss is {metadata['issuer']}",
        f"aud is this client ({client_id})",
        "nonce matched the one sent",
        f"not expired (exp {claims['exp']})",
    ]
    if "at_hash" in claims:
        if claims["at_hash"] != expected_at_hash(access_token, alg):
            raise SignInFailed("The ID token's at_hash does not match the access token")
        checks.append("at_hash matches the access token")
    return header, claims, checks
