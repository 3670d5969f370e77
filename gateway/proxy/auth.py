"""Authenticate and authorize a proxied request: RFC 6750 at the resource's door.

RFC 6750 §2.1: the token is read from the ``Authorization`` request header only, scheme
``Bearer`` compared case-insensitively (RFC 9110 §11.1). A token in the query (§2.3) or a
form body (§2.2) is ignored, never accepted: both leak into logs and caches.

Errors (RFC 6750 §3.1): no token -> 401 with a bare challenge; a bad one -> 401
``invalid_token``; a valid token without the route's scopes -> 403 ``insufficient_scope``.
When a route accepts any of several scope sets, the challenge's ``scope`` names the first
set: one set that would do, rather than a union the client need not hold.
"""

from __future__ import annotations

from gateway.errors import InsufficientScope, InvalidToken, MissingToken
from gateway.introspect.validator import AccessToken, BearerValidator
from gateway.proxy.routes import Route


def bearer_token(authorization: list[str]) -> str:
    """The token of the request's ``Authorization: Bearer`` header; ``MissingToken`` if none."""
    if not authorization:
        raise MissingToken()
    if len(authorization) > 1:
        raise InvalidToken("more than one Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken()
    token = token.strip()
    if not token:
        raise InvalidToken("empty bearer token")
    return token


def authenticate(
    validator: BearerValidator, route: Route, authorization: list[str], audience: str
) -> AccessToken:
    """The validated token of a request to a non-public ``route``."""
    return validator.validate(bearer_token(authorization), route.config.audience or audience)


def authorize(route: Route, token: AccessToken) -> None:
    """Raise ``InsufficientScope`` unless ``token`` grants access to ``route``."""
    if route.scope_sets and not any(need <= token.scopes for need in route.scope_sets):
        raise InsufficientScope(" ".join(route.config.scopes[0]))
