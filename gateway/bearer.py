"""RFC 6750 §2.1 and RFC 9449 §7: the access token of a request, read by every protected
resource of the gateway (the proxy, ``/decisions``, UserInfo and ``/oauth/me``, and, for its
opaque tokens, client registration) the same way.

The token is read from the ``Authorization`` request header only, its scheme compared
case-insensitively (RFC 9110 §11.1). A token in the query (§2.3) or a form body (§2.2) is
ignored, never accepted: both leak into logs and caches. ``credentials`` holds the rules:

- no header, or a scheme the resource does not take: no token (401 with a bare challenge,
  §3.1; in the ``DPoP`` scheme where DPoP is required);
- two ``Authorization`` headers, or two ``DPoP`` proofs: 400 ``invalid_request`` (§3.1: the
  request "repeats the same parameter"; RFC 9449 §4.3: "not more than one DPoP HTTP request
  header field"), in the ``DPoP`` scheme where DPoP is involved;
- ``Bearer`` where DPoP is required: refused before its token is looked at;
- an empty token: ``invalid_token``.

``proven`` checks a token presented in the ``DPoP`` scheme: validated, bound to a key, and
its one proof made by that key for this request (``gateway.dpop.Checker``).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.dpop import Checker, ProofRefused
from gateway.dpop_challenges import (
    PROOF_MISSING,
    BearerRefused,
    DpopInvalidToken,
    DpopRepeatedCredentials,
    DpopTokenRequired,
    InvalidDpopProof,
    RepeatedCredentials,
)
from gateway.errors import InvalidToken, MissingToken
from gateway.introspect.validator import AccessToken, BearerValidator

BEARER = "bearer"
DPOP = "dpop"

#: a DPoP-bound token presented as ``Bearer`` (RFC 9449 §7.2)
BOUND = "a DPoP-bound token needs the DPoP scheme and a proof"
_NOT_BOUND = "the token is not DPoP-bound"
_KEY = "invalid DPoP key binding"


def credentials(
    authorization: list[str],
    proofs: Sequence[str] = (),
    *,
    dpop: bool = True,
    dpop_required: bool = False,
) -> tuple[str, str]:
    """The scheme (``BEARER`` or ``DPOP``) and token of the request's one ``Authorization``
    header: ``proofs`` its ``DPoP`` header values; ``dpop`` whether the resource takes the
    ``DPoP`` scheme at all, ``dpop_required`` whether it takes nothing else."""
    if len(authorization) > 1 or len(proofs) > 1:
        involved = dpop and (
            dpop_required or bool(proofs) or any(_scheme(v) == DPOP for v in authorization)
        )
        raise DpopRepeatedCredentials() if involved else RepeatedCredentials()
    if not authorization:
        raise DpopTokenRequired() if dpop_required else MissingToken()
    scheme, _, token = authorization[0].strip().partition(" ")
    scheme = scheme.lower()
    if scheme == BEARER:
        if dpop_required:
            raise BearerRefused()
        token = token.strip()
        if not token:
            raise InvalidToken("empty bearer token")
        return BEARER, token
    if scheme != DPOP or not dpop:
        raise DpopTokenRequired() if dpop_required else MissingToken()
    token = token.strip()
    if not token:
        raise DpopInvalidToken("empty access token")
    return DPOP, token


def _scheme(value: str) -> str:
    return value.strip().partition(" ")[0].lower()


def proven(
    validator: BearerValidator,
    token: str,
    audience: str,
    checker: Checker,
    proofs: Sequence[str],
    method: str,
    url: str,
) -> AccessToken:
    """The validated token of a request in the ``DPoP`` scheme, bound to the key of its one
    proof for ``method url``; every refusal in the ``DPoP`` scheme."""
    try:
        access = validator.validate(token, audience)
    except InvalidToken as exc:
        raise DpopInvalidToken(exc.description) from None
    if access.jkt is None:
        raise DpopInvalidToken(_NOT_BOUND)
    if not proofs:
        raise InvalidDpopProof(PROOF_MISSING)
    try:
        jkt = checker.check(proofs[0], method, url, token)
    except ProofRefused as exc:
        nonce = checker.nonce() if exc.error == "use_dpop_nonce" else None
        raise InvalidDpopProof(exc, nonce) from None
    if jkt != access.jkt:
        raise DpopInvalidToken(_KEY)
    return access
