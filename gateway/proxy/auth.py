"""Authenticate and authorize a proxied request: RFC 6750 at the resource's door (the token
read as ``gateway.bearer`` reads it).

Errors (RFC 6750 §3.1): no token -> 401 with a bare challenge; a bad one -> 401
``invalid_token``; a valid token without the route's scopes -> 403 ``insufficient_scope``.
When a route accepts any of several scope sets, the challenge's ``scope`` names the first
set: one set that would do, rather than a union the client need not hold.

Every such refusal at a route says where the route's resource publishes its metadata (RFC 9728
§5.1: "resource_metadata"), and a 401 which scopes to ask for, so that a client (an MCP
client) can find the authorization server and get a token from the first refusal on:
``challenged``, applied once for both doors by the decision core, and by any later check that
refuses a token at a route.
"""

from __future__ import annotations

from gateway.bearer import bearer_token
from gateway.errors import BearerError, InsufficientScope
from gateway.introspect.validator import AccessToken, BearerValidator
from gateway.proxy.routes import Route


def authenticate(
    validator: BearerValidator, route: Route, authorization: list[str], audience: str
) -> AccessToken:
    """The validated token of a request to a non-public ``route``."""
    return validator.validate(bearer_token(authorization), route.config.audience or audience)


def authorize(route: Route, token: AccessToken) -> None:
    """Raise ``InsufficientScope`` unless ``token`` grants access to ``route``."""
    if route.scope_sets and not any(need <= token.scopes for need in route.scope_sets):
        raise InsufficientScope(route.challenge_scope or "")


def challenged(route: Route, error: BearerError) -> BearerError:
    """``error`` as refused at ``route``: naming the metadata URL of the route's resource, a
    401 also the route's first scope set (a 403 keeps the scopes it names). The URL comes
    from the resource identifier, never from the request."""
    if route.resource is not None:
        error.resource_metadata = route.resource.metadata_url
    if error.status_code == 401 and error.scope is None:
        error.scope = route.challenge_scope
    return error
