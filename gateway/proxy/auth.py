"""Authenticate and authorize a proxied request: RFC 6750 and RFC 9449 at the resource's door.

The token is read from the one ``Authorization`` header, by scheme (compared
case-insensitively, RFC 9110 §11.1), by ``gateway.bearer.credentials`` as every protected
resource of the gateway reads it:

- ``Bearer``: validated; a DPoP-bound token (``cnf.jkt``) is refused (RFC 9449 §7.2: it would
  let whoever copied it skip the proof), and so is every bearer request at a
  ``dpop = "required"`` route, before its token is looked at;
- ``DPoP``: validated the same way (the same validator, its signature cache), then its one
  ``DPoP`` proof checked (``gateway.dpop.Checker``, RFC 9449 §4.3): the request's method as
  sent, the URL the client used (``url``), the token's hash, its own window, replay and nonce;
  and the proof's key must be the one the token is bound to. A token that is not bound is
  refused: it is a bearer token, whatever the client calls it.

Errors (RFC 6750 §3.1): no token -> 401 with a bare challenge; a bad one -> 401
``invalid_token``; a bad proof -> 401 ``invalid_dpop_proof`` (``use_dpop_nonce`` with a
``DPoP-Nonce``); two ``Authorization`` or two ``DPoP`` headers -> 400 ``invalid_request``; a
valid token without the route's scopes -> 403 ``insufficient_scope``. Refusals where DPoP is
involved challenge in the ``DPoP`` scheme (``gateway.dpop_challenges``). When a route accepts
any of several scope sets, the challenge's ``scope`` names the first set: one set that would
do, rather than a union the client need not hold.

Every such refusal at a route says where the route's resource publishes its metadata (RFC 9728
§5.1: "resource_metadata"), and a 401 which scopes to ask for, so that a client (an MCP
client) can find the authorization server and get a token from the first refusal on:
``challenged``, applied once for both doors by the decision core, and by any later check that
refuses a token at a route.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.bearer import BEARER, BOUND, credentials, proven
from gateway.dpop import Checker
from gateway.dpop_challenges import DpopChallenge, DpopInsufficientScope, DpopInvalidToken
from gateway.errors import BearerError, InsufficientScope
from gateway.introspect.validator import AccessToken, BearerValidator
from gateway.proxy.routes import Route


def authenticate(
    validator: BearerValidator,
    route: Route,
    authorization: list[str],
    audience: str,
    checker: Checker | None = None,
    proofs: Sequence[str] = (),
    method: str = "",
    url: str = "",
) -> AccessToken:
    """The validated token of a request to a non-public ``route``: ``proofs`` its ``DPoP``
    header values, ``method`` as sent, ``url`` as the client used it (without the query)."""
    scheme, token = credentials(
        authorization,
        proofs,
        dpop=checker is not None,
        dpop_required=route.config.dpop == "required",
    )
    audience = route.config.audience or audience
    if scheme == BEARER:
        access = validator.validate(token, audience)
        if access.jkt is not None:
            raise DpopInvalidToken(BOUND)
        return access
    assert checker is not None  # credentials() takes the DPoP scheme only with a checker
    return proven(validator, token, audience, checker, proofs, method, url)


def authorize(route: Route, token: AccessToken) -> None:
    """Raise ``InsufficientScope`` unless ``token`` grants access to ``route`` (in the ``DPoP``
    scheme for a DPoP-bound token)."""
    if route.scope_sets and not any(need <= token.scopes for need in route.scope_sets):
        refused = InsufficientScope(route.challenge_scope or "")
        raise refused if token.jkt is None else DpopInsufficientScope.of(refused)


def challenged(route: Route, error: BearerError) -> BearerError:
    """``error`` as refused at ``route``: naming the metadata URL of the route's resource, a
    401 also the route's first scope set (a 403 keeps the scopes it names) and, in the ``DPoP``
    scheme at a route that takes bearer tokens too, a ``Bearer`` challenge beside. The URL
    comes from the resource identifier, never from the request."""
    if route.resource is not None:
        error.resource_metadata = route.resource.metadata_url
    if error.status_code == 401:
        if error.scope is None:
            error.scope = route.challenge_scope
        if isinstance(error, DpopChallenge) and route.config.dpop != "required":
            error.bearer_too = True
    return error
