"""RFC 6750 §2.1: the bearer token of a request, read by every protected resource of the
gateway (the proxy, ``/decisions``, UserInfo and ``/oauth/me``) the same way.

The token is read from the ``Authorization`` request header only, scheme ``Bearer`` compared
case-insensitively (RFC 9110 §11.1). A token in the query (§2.3) or a form body (§2.2) is
ignored, never accepted: both leak into logs and caches. No header, or another scheme: no token
(401 with a bare challenge, §3.1); two headers or an empty token: ``invalid_token``.
"""

from __future__ import annotations

from gateway.errors import InvalidToken, MissingToken


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
