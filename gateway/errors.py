"""The gateway's own errors, and the one place they become HTTP responses.

::

    GatewayError                     error, description, status_code
    ├── ConfigError                  bad config file or CLI usage (exit code 2, never HTTP)
    ├── BearerError                  RFC 6750 §3 errors at a protected resource
    │   ├── MissingToken             401, bare ``WWW-Authenticate: Bearer realm=...``
    │   ├── InvalidToken             401, error="invalid_token"
    │   └── InsufficientScope        403, error="insufficient_scope", scope="..."
    ├── RouteNotFound                404
    ├── MethodNotAllowed             405 with ``Allow``
    ├── BadRequestPath               400 (path tricks)
    ├── BadHost                      400: Host (or X-Forwarded-Host) is not a valid host
    ├── BadMethodOverride            400: a method override that names no one method
    ├── MethodOverrideRefused        403 at /decisions: an override the route does not allow
    ├── UntrustedPeer                403 at /decisions: the peer is not a trusted edge
    ├── AmbiguousRequest             403 at /decisions: which request is meant is unclear
    ├── UpstreamUnavailable          502 bad_gateway
    ├── UpstreamTimeout              504 gateway_timeout
    ├── StorageUnavailable           503 temporarily_unavailable (database down)
    └── PasswordsBusy                503 temporarily_unavailable (password work queue full)

Foreign exceptions are translated once, at the boundary that sees them: JOSE errors in the
validator, upstream client errors in the forwarder, SQLAlchemy errors in the storage layer.
"""

from __future__ import annotations

import json

REALM = "gateway"


class GatewayError(Exception):
    error = "server_error"
    status_code = 500
    description = ""

    def __init__(self, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        super().__init__(self.description or self.error)

    @property
    def reason(self) -> str:
        """Why, as a short fixed word for access logs and metric labels (never free text)."""
        return self.error

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def response_parts(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, raw headers and body: usable from plain ASGI code and Starlette alike."""
        payload = json.dumps(self.body()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
        ]
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in self.headers().items()]
        return self.status_code, headers, payload


class ConfigError(GatewayError):
    error = "config_error"


class BearerError(GatewayError):
    status_code = 401

    def challenge(self) -> str:
        return (
            f'Bearer realm="{REALM}", error="{self.error}", '
            f'error_description="{_quote(self.description)}"'
        )

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge()}


class MissingToken(BearerError):
    """RFC 6750 §3.1: a request without authentication gets no error code."""

    error = "unauthorized"
    description = "an access token is required"

    @property
    def reason(self) -> str:
        return "missing_token"

    def challenge(self) -> str:
        return f'Bearer realm="{REALM}"'


class InvalidToken(BearerError):
    """Raised only with one of a few fixed descriptions ("token expired", "bad signature"):
    the reason is the description as one word, a label of bounded cardinality."""

    error = "invalid_token"
    description = "invalid token"

    @property
    def reason(self) -> str:
        return self.description.replace(" ", "_").lower()


class InsufficientScope(BearerError):
    error = "insufficient_scope"
    status_code = 403
    description = "the token lacks a scope this resource requires"

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def challenge(self) -> str:
        """RFC 6750 §3: the scope that would do; the description stays in the body."""
        return f'Bearer realm="{REALM}", error="{self.error}", scope="{_quote(self.scope)}"'

    def body(self) -> dict[str, str]:
        return {**super().body(), "scope": self.scope}


class RouteNotFound(GatewayError):
    error = "not_found"
    status_code = 404
    description = "no route matches this request"


class MethodNotAllowed(GatewayError):
    error = "method_not_allowed"
    status_code = 405
    description = "this route does not accept the request's method"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__()
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class BadRequestPath(GatewayError):
    error = "invalid_request"
    status_code = 400
    description = "the request path is not acceptable"


class BadHost(GatewayError):
    error = "invalid_request"
    status_code = 400
    description = "the request's host is not a valid host name"


class BadMethodOverride(GatewayError):
    error = "invalid_request"
    status_code = 400
    description = "a method override header must name one HTTP method"


class MethodOverrideRefused(GatewayError):
    """At ``/decisions`` only: the edge forwards the override header whatever the answer, so a
    request whose route does not honour it is refused (the proxy drops the header instead)."""

    error = "invalid_request"
    status_code = 403
    description = "this route does not accept a method override"


class UntrustedPeer(GatewayError):
    error = "access_denied"
    status_code = 403
    description = "decisions are answered for the trusted edges only"


class AmbiguousRequest(GatewayError):
    """The request an edge asks about is missing, repeated or described twice, differently:
    never guess which one the edge meant."""

    error = "invalid_request"
    status_code = 403
    description = "the request to decide on is ambiguous"


class UpstreamUnavailable(GatewayError):
    error = "bad_gateway"
    status_code = 502
    description = "the upstream service could not be reached"


class UpstreamTimeout(GatewayError):
    error = "gateway_timeout"
    status_code = 504
    description = "the upstream service did not answer in time"


class StorageUnavailable(GatewayError):
    error = "temporarily_unavailable"
    status_code = 503
    description = "the gateway's database is unavailable; retry shortly"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class PasswordsBusy(GatewayError):
    """More password verifications waiting than ``[passwords] max_queued``: refused at once,
    not queued without end. RFC 6749 defines ``temporarily_unavailable`` for the authorization
    endpoint (§4.1.2.1); the token endpoint answers it too, as JSON with ``Retry-After``."""

    error = "temporarily_unavailable"
    status_code = 503
    description = "the server is busy checking passwords; retry shortly"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


def _quote(value: str) -> str:
    """RFC 6750 §3: quoted-string values exclude '"' and '\\'."""
    return "".join(c for c in value if c not in '"\\' and 0x20 <= ord(c) < 0x7F)
