"""DPoP at a protected resource (RFC 9449 §7): refusals in the ``DPoP`` authentication scheme,
for every resource that reads tokens with ``gateway.bearer`` (the proxy's routes, ``/decisions``,
UserInfo and ``/oauth/me``).

A refusal of a request that used the ``DPoP`` scheme, or that a ``dpop = "required"`` route
answers, challenges with the ``DPoP`` scheme (RFC 9449 §7.1): ``algs`` (the proof algorithms
the gateway takes) and the RFC 6750 error attributes, plus the route's ``scope`` and RFC 9728
``resource_metadata`` as ``Bearer`` challenges carry them. When the route takes bearer tokens
too (``dpop = "allowed"``), a bare ``Bearer`` challenge follows in the same field (RFC 9110
§11.6.1 allows one field with several challenges or several fields; one field is what every
edge passes on whole: nginx before 1.23 copies a single ``WWW-Authenticate`` from its
``auth_request``, and most clients join repeated fields into this same string anyway). A
missing or stale nonce (``use_dpop_nonce``) also carries a fresh ``DPoP-Nonce`` (§8).

Refusals of bearer requests at an ``allowed`` route keep their ``Bearer`` challenge alone, as
before DPoP: a client learns that the resource takes DPoP from its metadata
(``dpop_signing_alg_values_supported``).
"""

from __future__ import annotations

from gateway.config import PROOF_ALGORITHMS
from gateway.dpop import ProofRefused
from gateway.errors import BearerError, InsufficientScope, InvalidToken, MissingToken

#: RFC 9449 §7.1 ``algs``: the proof algorithms accepted, space-separated
ALGS = " ".join(PROOF_ALGORITHMS)


class DpopChallenge(BearerError):
    """A refusal challenged in the ``DPoP`` scheme."""

    #: set at a ``dpop = "allowed"`` route for a 401 (``auth.challenged``): a ``Bearer``
    #: challenge follows the ``DPoP`` one
    bearer_too = False
    #: ``use_dpop_nonce``: the nonce to use (``DPoP-Nonce``)
    nonce: str | None = None

    def challenge(self, scheme: str = "DPoP", *first: tuple[str, str]) -> str:
        return super().challenge("DPoP", ("algs", ALGS))

    def headers(self) -> dict[str, str]:
        challenge = self.challenge()
        if self.bearer_too:
            beside = MissingToken()
            beside.scope, beside.resource_metadata = self.scope, self.resource_metadata
            challenge += ", " + beside.challenge()
        headers = {"WWW-Authenticate": challenge}
        if self.nonce is not None:
            headers["DPoP-Nonce"] = self.nonce
        return headers


class DpopTokenRequired(DpopChallenge, MissingToken):
    """No token for the ``DPoP`` scheme: none at all at a ``dpop = "required"`` route, or one
    presented with another scheme there (RFC 6750 §3.1: a request "attempted using an
    unsupported authentication method" gets no error code)."""


class BearerRefused(DpopTokenRequired):
    """A ``Bearer`` token at a ``dpop = "required"`` route: never validated, never passed."""

    description = "this route takes DPoP-bound tokens only, with the DPoP scheme and a proof"

    @property
    def reason(self) -> str:
        return "dpop_required"


class DpopInvalidToken(DpopChallenge, InvalidToken):
    """``invalid_token`` in the ``DPoP`` scheme: the token of a ``DPoP`` request refused by the
    validator, a bearer token presented as ``DPoP``, a DPoP-bound token presented as
    ``Bearer`` (§7.2), or a proof by a key other than the token's (§7.1's "Invalid DPoP key
    binding"). One of a few fixed descriptions, as ``InvalidToken``'s."""


class InvalidDpopProof(DpopChallenge):
    """The proof refused (``gateway.dpop.ProofRefused``): ``invalid_dpop_proof``, or
    ``use_dpop_nonce`` with the nonce to use."""

    def __init__(self, refused: ProofRefused, nonce: str | None = None) -> None:
        super().__init__(refused.description)
        self.error = refused.error
        self.nonce = nonce
        self._reason = refused.reason

    @property
    def reason(self) -> str:
        return self._reason


#: a ``DPoP`` request without a proof
PROOF_MISSING = ProofRefused("DPoP proof is missing")


class DpopInsufficientScope(DpopChallenge, InsufficientScope):
    """A 403 to a DPoP-bound token: ``insufficient_scope`` in the scheme it was sent with."""

    _reason = "insufficient_scope"

    @classmethod
    def of(cls, refused: InsufficientScope) -> DpopInsufficientScope:
        """``refused`` (a route's or a tool's scopes) in the ``DPoP`` scheme."""
        error = cls(refused.scope)
        error.description, error._reason = refused.description, refused.reason
        return error

    @property
    def reason(self) -> str:
        return self._reason


class RepeatedCredentials(BearerError):
    """RFC 6750 §3.1 ``invalid_request`` (400): the request "repeats the same parameter" or
    "uses more than one method for including an access token": two ``Authorization`` fields,
    or two ``DPoP`` proofs (RFC 9449 §4.3: "not more than one DPoP HTTP request header
    field"). Never guess which one the client meant."""

    error = "invalid_request"
    status_code = 400
    description = "a request carries one Authorization header and at most one DPoP header"

    @property
    def reason(self) -> str:
        return "repeated_credentials"


class DpopRepeatedCredentials(DpopChallenge, RepeatedCredentials):
    """``RepeatedCredentials`` where DPoP is involved, in the ``DPoP`` scheme."""
