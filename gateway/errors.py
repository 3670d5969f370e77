"""The gateway's own errors, and the one place they become HTTP responses.

::

    GatewayError                     error, description, status_code
    ├── ConfigError                  bad config file or CLI usage (exit code 2, never HTTP)
    ├── InvalidInput                 a user, client or consent the CLI refuses (exit code 2)
    ├── BearerError                  RFC 6750 §3 errors at a protected resource
    │   ├── MissingToken             401, ``WWW-Authenticate: Bearer realm=...`` without error
    │   ├── InvalidToken             401, error="invalid_token"
    │   └── InsufficientScope        403, error="insufficient_scope", scope="..."
    │       └── ToolScopeRequired    403, the scopes of the tool a ``tools/call`` names
    │       (at a route, each also with resource_metadata="...", a 401 with scope="...")
    │       (DPoP-scheme refusals, RFC 9449 §7: ``dpop_challenges.py``)
    ├── RouteNotFound                404
    ├── MethodNotAllowed             405 with ``Allow``
    ├── BadRequestPath               400 (path tricks)
    ├── BadHost                      400: Host (or X-Forwarded-Host) is not a valid host
    ├── BadMethodOverride            400: a method override that names no one method
    ├── MethodOverrideRefused        403 at /decisions: an override the route does not allow
    ├── UntrustedPeer                403 at /decisions: the peer is not a trusted edge
    ├── AmbiguousRequest             403 at /decisions: which request is meant is unclear
    ├── McpRefusal                   an ``mcp = true`` route's message refused (``proxy/mcp.py``)
    │   ├── InvalidMcpMessage        400: not one JSON-RPC 2.0 message, or headers that disagree
    │   ├── McpMessageTooLarge       413: past the route's ``mcp_max_body``
    │   ├── McpContentEncoding       415: a compressed body, which cannot be read
    │   ├── McpBodyTimeout           408: the body stalled while it was read
    │   ├── ToolNotAllowed           403: no ``mcp_tool_scopes`` pattern names the tool
    │   └── McpUnchecked             403 at /decisions: a message it cannot see
    ├── ListenerRefusal              the listener's own answers, before any app sees the request
    │   ├── MalformedRequest         400, not an HTTP/1.x message llhttp accepts
    │   ├── MissingOrRepeatedHost    400, RFC 9112 §3.2
    │   ├── RequestHeadTimeout       408, the head not whole within [server] head_timeout
    │   ├── RequestHeadTooLarge      431, past [server] max_request_head
    │   │   └── TooManyHeaderFields  431, past [server] max_header_fields
    │   ├── UnsupportedTransferCoding 501, RFC 9112 §6.1
    │   └── TooManyConnections       503, past [server] max_connections
    ├── UpstreamUnavailable          502 bad_gateway
    ├── UpstreamTimeout              504 gateway_timeout
    ├── StorageUnavailable           503 temporarily_unavailable (database down)
    ├── PasswordsBusy                503 temporarily_unavailable (password work queue full)
    └── NotANavigation               403 on the pages: a form POST that was not a person's

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


class InvalidInput(GatewayError):
    """What an operator typed for a user, client or consent (``gateway.accounts``) is refused:
    a bad e-mail address or redirect URI, a short password, a duplicate, an unknown id. The
    CLI reports it as it does a ``ConfigError``; the config file is not at fault."""

    error = "invalid_input"
    status_code = 400


class BearerError(GatewayError):
    """An RFC 6750 §3 challenge. At a route (the proxy, ``/decisions``) it also says where the
    resource's metadata is, RFC 9728 §5.1 ``resource_metadata``, and on a 401 the ``scope`` a
    token needs there (what MCP clients ask for): both set by ``proxy.auth.challenged``."""

    status_code = 401
    #: RFC 6750 §3 ``scope``: scopes that would do, space-separated (None: not said)
    scope: str | None = None
    #: RFC 9728 §5.1: the URL of the resource's metadata, built from its identifier
    resource_metadata: str | None = None

    def error_params(self) -> list[tuple[str, str]]:
        """The challenge's error attributes (values not yet quoted)."""
        return [("error", self.error), ("error_description", _quote(self.description))]

    def challenge(self, scheme: str = "Bearer", *first: tuple[str, str]) -> str:
        """The challenge in ``scheme``, opening with ``first`` (default: the realm)."""
        params = [*(first or [("realm", REALM)]), *self.error_params()]
        if self.scope:
            params.append(("scope", _quote(self.scope)))
        if self.resource_metadata:
            params.append(("resource_metadata", _quoted_pairs(self.resource_metadata)))
        return f"{scheme} " + ", ".join(f'{name}="{value}"' for name, value in params)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge()}


class MissingToken(BearerError):
    """RFC 6750 §3.1: a request without authentication gets no error code (where to learn
    more, ``scope`` and ``resource_metadata``, is not error information)."""

    error = "unauthorized"
    description = "an access token is required"

    @property
    def reason(self) -> str:
        return "missing_token"

    def error_params(self) -> list[tuple[str, str]]:
        return []


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
        self.scope: str = scope

    def error_params(self) -> list[tuple[str, str]]:
        """RFC 6750 §3: the scope that would do (``challenge`` adds it); the description
        stays in the body."""
        return [("error", self.error)]

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


class McpRefusal(GatewayError):
    """A message to an ``mcp = true`` route refused before it reaches the upstream
    (``gateway.proxy.mcp``). One fixed description per case: nothing of the body is echoed."""

    error = "invalid_request"
    status_code = 400
    label = "invalid_mcp_message"

    @property
    def reason(self) -> str:
        return self.label


class InvalidMcpMessage(McpRefusal):
    description = "the body is not one JSON-RPC 2.0 message"


class McpMessageTooLarge(McpRefusal):
    """RFC 9110 §15.5.14: 413 "the request content is larger than the server is willing or
    able to process"."""

    status_code = 413
    label = "content_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"an MCP message on this route is at most {limit} bytes")


class McpContentEncoding(McpRefusal):
    """RFC 9110 §15.5.16: 415 for a content coding the server does not take, with
    ``Accept-Encoding`` saying which it does (none but identity)."""

    status_code = 415
    label = "unsupported_content_encoding"
    description = "an MCP message must be sent uncompressed (no Content-Encoding)"

    def headers(self) -> dict[str, str]:
        return {"Accept-Encoding": "identity"}


class McpBodyTimeout(McpRefusal):
    """RFC 9110 §15.5.9: 408, the message was not whole within the proxy's ``idle_timeout``
    between two of its chunks."""

    status_code = 408
    label = "request_body_timeout"
    description = "the request body did not arrive in time"


class ToolNotAllowed(McpRefusal):
    """Deny by default: no pattern of the route's ``mcp_tool_scopes`` matches the tool, so no
    scope would let it through, and no challenge invites the client to ask for one."""

    error = "access_denied"
    status_code = 403
    label = "tool_scope"
    description = "this tool may not be called on this route"


class McpUnchecked(McpRefusal):
    """At ``/decisions`` only: the edge does not send the body, so a message to an
    ``mcp = true`` route (its tool, its JSON-RPC shape) cannot be checked; the edge would
    forward it unchecked, so it is refused. Such a route is served by the gateway's proxy."""

    error = "access_denied"
    status_code = 403
    label = "mcp_unchecked"
    description = (
        "this route is an MCP server (mcp = true): its messages are checked by the gateway's "
        "proxy, which reads them; /decisions cannot see a request's body"
    )


class ToolScopeRequired(InsufficientScope):
    """The token holds the route's scopes but not those of the tool a ``tools/call`` names:
    RFC 6750 ``insufficient_scope``, whose ``scope`` is what would do for both (the MCP
    client's step-up asks for exactly that)."""

    description = "the token lacks a scope this tool requires"

    @property
    def reason(self) -> str:
        return "tool_scope"


class ListenerRefusal(GatewayError):
    """Answered by the listener (``gateway/listener.py``) on the connection itself, which it then
    closes: the request never reaches the app. One fixed description per class; ``reason``
    names it in the metrics."""

    error = "invalid_request"
    label = "malformed_request"

    @property
    def reason(self) -> str:
        return self.label


class MalformedRequest(ListenerRefusal):
    status_code = 400
    description = "the request is not a valid HTTP/1.1 message"


class MissingOrRepeatedHost(ListenerRefusal):
    """RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    HTTP/1.1 request message that lacks a Host header field and to any request message that
    contains more than one Host header field line"."""

    status_code = 400
    description = "a request needs one Host header field (HTTP/1.0: at most one)"
    label = "missing_or_repeated_host"


class RequestHeadTimeout(ListenerRefusal):
    """RFC 9110 §15.5.9: the server "did not receive a complete request message within the
    time that it was prepared to wait"."""

    status_code = 408
    description = "the request head did not arrive in time"
    label = "request_head_timeout"


class RequestHeadTooLarge(ListenerRefusal):
    """RFC 6585 §5: 431 "indicates that the server is unwilling to process the request because
    its header fields are too large"."""

    status_code = 431
    description = "the request line and header fields are too large"
    label = "request_head_too_large"


class TooManyHeaderFields(RequestHeadTooLarge):
    description = "the request has too many header fields"
    label = "too_many_header_fields"


class UnsupportedTransferCoding(ListenerRefusal):
    """RFC 9112 §6.1: "A server that receives a request message with a transfer coding it does
    not understand SHOULD respond with 501 (Not Implemented)". ``chunked``, once, is the only
    coding understood."""

    status_code = 501
    description = "the only transfer coding accepted is chunked, applied once"
    label = "unsupported_transfer_coding"


class TooManyConnections(ListenerRefusal):
    """Past ``[server] max_connections`` (or what the file descriptor limit lets a process
    hold), a new connection is answered at once, before it sends anything."""

    error = "temporarily_unavailable"
    status_code = 503
    description = "the server has too many connections open; retry shortly"
    label = "too_many_connections"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


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


class NotANavigation(GatewayError):
    """A form of the authorization pages posted by something other than a person on the page
    (Fetch Metadata says a script's request, a frame or another site: ``issuer.fetch_metadata``).
    Shown as an error page; nothing is stored and the session is left as it was."""

    error = "access_denied"
    status_code = 403
    description = "This form can only be sent from its own page. Nothing was changed."


def _quote(value: str) -> str:
    """RFC 6750 §3: the values of its attributes exclude '"' and '\\'."""
    return "".join(c for c in value if c not in '"\\' and 0x20 <= ord(c) < 0x7F)


def _quoted_pairs(value: str) -> str:
    """RFC 9110 §5.6.4: the inside of a quoted-string, '"' and '\\' as quoted-pairs (a
    resource identifier has neither: ``config.load`` allows URI characters only)."""
    return "".join("\\" + c if c in '"\\' else c for c in value if 0x20 <= ord(c) < 0x7F)
