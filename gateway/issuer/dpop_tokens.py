"""DPoP at the token endpoint (RFC 9449 §5, §8, §10): the proof a token request carries, and
what it binds.

- The proof: at most one ``DPoP`` header (§4.3 item 1: "there is not more than one DPoP HTTP
  request header field"), checked by the one checker (``gateway.dpop.Checker``) for ``POST``
  to the token endpoint's URL, before the grant runs: a refused proof costs the client
  nothing (no code used, no refresh token rotated). A refusal is 400 ``invalid_dpop_proof``,
  or ``use_dpop_nonce`` with a fresh ``DPoP-Nonce`` header (§8).
- What it binds (``SenderConstrained``, a mixin of every grant): the access token gets
  ``cnf.jkt`` and ``token_type`` ``DPoP``; a public client's refresh token is bound to the key
  (§5), a confidential client's is not; a code whose authorization request named ``dpop_jkt``
  (§10) is redeemed only with a proof by that key. A client registered with ``require_dpop``
  (``dpop_bound_access_tokens``, §5.2) gets nothing without a proof.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, OAuth2Error

from gateway.dpop import Checker, ProofRefused, b64url, b64url_decode
from gateway.issuer.oauth_request import OAuthRequest
from gateway.issuer.principal import Principal
from gateway.models import Client

#: the request header a proof travels in (RFC 9449 §4.1)
DPOP_HEADER = "DPoP"
#: the response header that hands a client the nonce to put in its next proof (§8)
NONCE_HEADER = "DPoP-Nonce"
#: an RFC 7638 SHA-256 thumbprint: 32 bytes, base64url without padding
THUMBPRINT_LENGTH = 43
ONE_PROOF = "A request carries one DPoP proof at most."


class DpopProofError(OAuth2Error):
    """RFC 9449 §5 and §8: ``invalid_dpop_proof``, or ``use_dpop_nonce`` with the nonce to use
    in a ``DPoP-Nonce`` header; 400 with a fixed description."""

    def __init__(self, error: str, description: str, nonce: str | None = None) -> None:
        super().__init__(description=description, status_code=400, error=error)
        self.nonce = nonce

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        if self.nonce is not None:
            headers.append((NONCE_HEADER, self.nonce))
        return headers


class TokenRequestProof:
    """The proof of a token request, checked for ``POST`` to ``url`` (the token endpoint as
    discovery publishes it)."""

    def __init__(self, checker: Checker, url: str) -> None:
        self.checker = checker
        self.url = url

    def thumbprint(self, request: OAuthRequest) -> str | None:
        """The thumbprint of the key that made the request's proof; None when it has none.
        Raise ``DpopProofError``."""
        values = request.headers.getlist(DPOP_HEADER)
        if not values:
            return None
        # a proof is a compact JWS, which never holds a comma: one means two joined values
        if len(values) > 1 or "," in values[0]:
            raise DpopProofError("invalid_dpop_proof", ONE_PROOF)
        try:
            return self.checker.check(values[0], "POST", self.url)
        except ProofRefused as refused:
            nonce = self.checker.nonce() if refused.error == "use_dpop_nonce" else None
            raise DpopProofError(refused.error, refused.description, nonce) from None

    def nonce_headers(self) -> dict[str, str]:
        """What every successful answer carries: the nonce for the next proof, when on."""
        nonce = self.checker.nonce()
        return {} if nonce is None else {NONCE_HEADER: nonce}


def is_thumbprint(value: str) -> bool:
    """A plausible ``dpop_jkt`` (§10): 43 base64url characters, canonically encoded (the last
    one's unused bits zero), as every SHA-256 thumbprint is."""
    if len(value) != THUMBPRINT_LENGTH:
        return False
    try:
        return b64url(b64url_decode(value)) == value
    except ValueError:
        return False


def require_key(bound: str | None, proven: str | None, what: str) -> None:
    """A credential ``bound`` to a key is used only with a proof by that key (§5, §10)."""
    if bound is not None and bound != proven:
        raise InvalidGrantError(f"The {what} is bound to a DPoP key this request does not prove.")


class SenderConstrained(grants.BaseGrant):
    """Grant mixin: a client that must use DPoP sends a proof; the tokens issued are bound to
    the key the request's proof proves (``OAuthRequest.dpop_jkt``), if any."""

    request: OAuthRequest

    def authenticate_token_endpoint_client(self) -> Client:
        client: Client = super().authenticate_token_endpoint_client()
        if client.require_dpop and self.request.dpop_jkt is None:
            # RFC 9449 §5.2: "MUST reject token requests from this client that do not contain
            # the DPoP header"
            raise InvalidRequestError("This client's token requests must carry a DPoP proof.")
        return client

    def generate_token(self, user: Any = None, **kwargs: Any) -> dict[str, Any]:
        jkt = self.request.dpop_jkt
        if jkt is not None and isinstance(user, Principal):
            user = dataclasses.replace(user, jkt=jkt)
        token: dict[str, Any] = super().generate_token(user=user, **kwargs)
        return token


def refresh_binding(client: Client, proven: str | None) -> str | None:
    """The key a refresh token issued now is bound to: a public client's, to the key its
    request proves (§5); a confidential client's, to none (it authenticates instead)."""
    return proven if client.is_public else None
