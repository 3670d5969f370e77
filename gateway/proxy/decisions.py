"""``/decisions``: the decision core as an external authorizer for the edge in front.

nginx ``auth_request``, Caddy ``forward_auth``, Traefik ``ForwardAuth`` and Envoy
``ext_authz`` (HTTP service) ask here before they forward a request, and get the answer the
gateway's own proxy would give (``core.py``). Only the way the request is read and the
answer written differ.

The request being decided is read, in this order:

1. ``X-Forwarded-Method`` / ``X-Forwarded-Host`` / ``X-Forwarded-Uri`` (Traefik, Caddy);
2. ``X-Original-Method`` / ``X-Original-URI`` / ``Host`` (nginx: its ``auth_request``
   subrequest is always GET, so the method must come from a header);
3. the request itself with ``/decisions`` cut off the front (Envoy, ``path_prefix``), keeping
   its method, ``Host`` and path.

DPoP (RFC 9449): every ``DPoP`` header the edge passes, and the URL the client used: the
scheme from ``X-Forwarded-Proto`` (each edge sets it; without it, the scheme the edge asks in),
the host and the path as above, and ``X-Forwarded-Port`` when the host names no port (nginx's
``$host`` never does). The method a proof signs is the described one, the method the
client sent. An allowed DPoP request's answer carries the next ``DPoP-Nonce`` when nonces are
on, for the edges that pass it to the client.

The host is normalised and checked in the decision core (``gateway.hosts``), as the proxy's
is; so are method override headers (``overrides.py``): the edge forwards them whatever the
answer, so one the route does not honour is refused here, where the proxy would drop it.

Those headers are honoured only from ``[decisions] trusted_peers``; any other peer is refused
403. When both header descriptions are present and disagree, or one is repeated or missing a
part, the answer is 403: never guess which request the edge meant (oauth2-proxy's
GHSA-7x63-xv5r-3p2x came from trusting a client's ``X-Forwarded-Uri``).

The edge never sends the body: a request that could carry an MCP message (any method but
``GET``, ``HEAD``, ``DELETE`` and ``OPTIONS``) to an ``mcp = true`` route is refused 403
(``McpUnchecked``), whatever its token, since the edge would forward it unchecked; such a
route is served by the gateway's own proxy, which reads each message (``mcp.py``).

Answers: 200 with the identity headers (and the assertion), plus
``x-envoy-auth-headers-to-remove`` naming those this decision does not set, so Envoy strips a
client's copies too; a denial is 401 (token) or 403 (everything else: nginx turns any other
status into a 500), with the error as JSON and RFC 6750 ``WWW-Authenticate``. Nothing here
touches the database.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gateway.config import DECISIONS_PREFIX, Config
from gateway.context import RequestContext
from gateway.errors import AmbiguousRequest, GatewayError, McpUnchecked, UntrustedPeer
from gateway.forwarded import ForwardedPolicy
from gateway.proxy.core import Allowed, DecisionCore, Denied
from gateway.proxy.exchange import Receive, Send
from gateway.proxy.headers import UNDERSCORE, Header
from gateway.proxy.mcp import BODYLESS_METHODS
from gateway.proxy.overrides import METHOD, OVERRIDE_HEADERS

log = logging.getLogger("gateway.decisions")

_PREFIX = DECISIONS_PREFIX.encode()
_BELOW = DECISIONS_PREFIX + "/"
_FORWARDED_METHOD = b"x-forwarded-method"
_FORWARDED_HOST = b"x-forwarded-host"
_FORWARDED_URI = b"x-forwarded-uri"
_ORIGINAL_METHOD = b"x-original-method"
_ORIGINAL_URI = b"x-original-uri"
_FORWARDED_PROTO = b"x-forwarded-proto"
_FORWARDED_PORT = b"x-forwarded-port"
_HOST = b"host"
_AUTHORIZATION = b"authorization"
_DPOP = b"dpop"
#: the headers a decision reads, each at most once (Authorization: ``gateway.bearer.credentials``)
_DESCRIBING = frozenset(
    {
        _FORWARDED_METHOD,
        _FORWARDED_HOST,
        _FORWARDED_URI,
        _FORWARDED_PROTO,
        _FORWARDED_PORT,
        _ORIGINAL_METHOD,
        _ORIGINAL_URI,
        _HOST,
    }
)
_NO_STORE = (b"cache-control", b"no-store")
_PORTED = re.compile(r":[0-9]*\Z")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def is_decision_path(path: str) -> bool:
    return path == DECISIONS_PREFIX or path.startswith(_BELOW)


class Described:
    """The request an edge asks about."""

    __slots__ = (
        "authorization",
        "host",
        "method",
        "method_overrides",
        "port",
        "proofs",
        "raw_path",
        "scheme",
    )

    def __init__(
        self,
        method: str,
        host: str | None,
        raw_path: bytes,
        authorization: list[str],
        method_overrides: tuple[Header, ...],
        proofs: list[str],
        scheme: str,
        port: str | None = None,
    ) -> None:
        self.method = method
        #: as the edge sent it (``Host`` or ``X-Forwarded-Host``), latin-1
        self.host = host
        self.raw_path = raw_path
        self.authorization = authorization
        self.method_overrides = method_overrides
        #: every ``DPoP`` value, and the scheme the client used (``X-Forwarded-Proto``)
        self.proofs = proofs
        self.scheme = scheme
        #: ``X-Forwarded-Port``, for a host without one
        self.port = port

    @property
    def origin(self) -> str:
        """``scheme://host`` as the client used it; empty without a host."""
        if not self.host:
            return ""
        host = self.host
        if self.port and not _PORTED.search(host) and self.port != _DEFAULT_PORTS.get(self.scheme):
            host = f"{host}:{self.port}"
        return f"{self.scheme}://{host}"


def describe(scope: dict[str, Any], raw_path: bytes) -> Described:
    """Read the request to decide on from a ``/decisions`` request (see the module's order),
    ``raw_path`` its own path as sent; ``AmbiguousRequest`` when the description is repeated,
    incomplete or contradictory."""
    fields: dict[bytes, str] = {}
    authorization: list[str] = []
    proofs: list[str] = []
    overrides: list[Header] = []
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION:
            authorization.append(value.decode("latin-1"))
        elif name == _DPOP:
            proofs.append(value.decode("latin-1"))
        elif name in _DESCRIBING:
            if name in fields:
                raise AmbiguousRequest(f"more than one {name.decode()} header")
            fields[name] = value.decode("latin-1")
        elif name in OVERRIDE_HEADERS or (
            UNDERSCORE in name and name.replace(b"_", b"-") in OVERRIDE_HEADERS
        ):
            overrides.append((name, value))
    host = fields.get(_HOST)
    scheme = fields.get(_FORWARDED_PROTO, scope["scheme"]).strip().lower()
    port = fields.get(_FORWARDED_PORT)
    forwarded = (fields.get(_FORWARDED_METHOD), fields.get(_FORWARDED_URI))
    original = (fields.get(_ORIGINAL_METHOD), fields.get(_ORIGINAL_URI))
    if forwarded == (None, None) and original == (None, None):
        # not below the prefix (an encoded "/decisions"): refused as a path trick by the core
        rest = raw_path[len(_PREFIX) :] if raw_path.startswith(_PREFIX) else b""
        return Described(
            scope["method"], host, rest, authorization, tuple(overrides), proofs, scheme, port
        )
    if forwarded != (None, None) and original != (None, None):
        pairs = (*zip(forwarded, original, strict=True), (fields.get(_FORWARDED_HOST), host))
        for one, other in pairs:
            if one is not None and other is not None and one != other:
                raise AmbiguousRequest("X-Forwarded-* and X-Original-* describe different requests")
    if forwarded != (None, None):
        method, uri = forwarded
        host = fields.get(_FORWARDED_HOST, host)
        names = "X-Forwarded-Method and X-Forwarded-Uri"
    else:
        method, uri = original
        names = "X-Original-Method and X-Original-URI"
    if method is None or uri is None:
        raise AmbiguousRequest(f"{names} are both required")
    if not METHOD.fullmatch(method):
        raise AmbiguousRequest("the forwarded method is not an HTTP method")
    path = uri.partition("?")[0]
    return Described(
        method, host, path.encode("latin-1"), authorization, tuple(overrides), proofs, scheme, port
    )


class DecisionEndpoint:
    """The raw ASGI app for ``/decisions`` and everything below it, any method."""

    def __init__(self, config: Config, core: DecisionCore) -> None:
        self._core = core
        self._peers = ForwardedPolicy(config.decisions.trusted_peers)
        names = (*config.proxy.identity_headers.names(), config.proxy.assertion.header)
        #: every header a decision may set, lower-case, for x-envoy-auth-headers-to-remove
        self._settable = tuple(name.lower().encode("latin-1") for name in names)

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        context: RequestContext | None = None,
    ) -> None:
        """Answer one decision. ``context``: the request's, from the gateway's dispatch, which
        logs it: it learns whose token it was and, for a denial, why, as a proxied request's
        does. Called alone (no dispatch in front, no log), the endpoint makes one of its own."""
        if context is None:  # no X-Request-Id is taken: there is no response of ours to carry it
            context = RequestContext(scope, None, self._peers.is_trusted)
        try:
            if not self._peers.is_trusted(context.peer):
                raise UntrustedPeer()
            request = describe(scope, context.raw_path)
            host = request.host
            decision = self._core.decide(
                request.raw_path,
                None if host is None else host.encode("latin-1"),
                request.method,
                request.authorization,
                request.method_overrides,
                proofs=request.proofs,
                origin=request.origin,
            )
            route = decision.route
            if (
                route is not None
                and route.mcp is not None
                and request.method not in BODYLESS_METHODS
            ):
                decision = Denied(McpUnchecked(), route, decision.token)
        except GatewayError as exc:
            decision = Denied(exc, None)
        except Exception:
            log.exception("unexpected error while deciding")  # fail closed, as a denial
            decision = Denied(GatewayError("the gateway could not decide"), None)
        if decision.token is not None:
            context.client_id, context.sub = decision.token.client_id, decision.token.sub
        if isinstance(decision, Denied):
            context.reason = decision.error.reason
        if isinstance(decision, Allowed):
            await self._allow(send, decision)
        else:
            await _deny(send, decision.error)

    async def _allow(self, send: Send, decision: Allowed) -> None:
        headers: list[Header] = [*decision.identity, _NO_STORE, (b"content-length", b"0")]
        nonce = self._core.dpop.nonce() if decision.token and decision.token.jkt else None
        if nonce is not None:
            headers.append((b"dpop-nonce", nonce.encode("ascii")))
        sent = {name.lower() for name, _ in decision.identity}
        unset = b",".join(name for name in self._settable if name not in sent)
        if unset:
            headers.append((b"x-envoy-auth-headers-to-remove", unset))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _deny(send: Send, error: GatewayError) -> None:
    """401 for a missing or bad token, 403 for every other refusal (the error says which)."""
    status, headers, body = error.response_parts()
    status = 401 if status == 401 else 403
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
