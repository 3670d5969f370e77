"""The decision core: may this request pass, and with which identity headers?

One function for both doors (Oathkeeper's ``RequestHandler`` for its proxy and its decision
API): the proxy (``app.py``) and the decision endpoint for edges (``decisions.py``) describe a
request as (raw path, raw host, method, ``Authorization`` values, method override headers, and
for DPoP the ``DPoP`` values and the origin the client used) and get the same answer, so the
two modes can never drift. In the proxy's order:

1. the host normalised, an invalid one refused (``gateway.hosts``, ``BadHost``);
2. the path decoded once, tricks refused (``paths.decode_path``, ``BadRequestPath``);
3. the most specific route for (host, path) and the method (``RouteNotFound``,
   ``MethodNotAllowed``); with a method override the route allows, the route for the
   overriding method instead (``overrides.py``: ``BadMethodOverride``, and at ``/decisions``
   ``MethodOverrideRefused`` where the proxy drops the header);
4. for a non-public route, the token validated for the route's audience, a DPoP-bound one's
   proof checked against the method as sent and the URL as the client used it (origin and raw
   path), and its scopes checked (``auth.authenticate``, ``auth.authorize``: ``MissingToken``,
   ``InvalidToken``, ``InsufficientScope``, the ``DPoP`` scheme's ``gateway.dpop_challenges``);
5. the identity headers the token vouches for, and the signed assertion when enabled.

A denial is returned, not raised, with the route when one matched: the proxy names it in its
metrics and log. A refused bearer token is counted here, once for both doors, by its reason,
and its challenge given the route's ``resource_metadata`` (and a 401 its ``scope``) here too
(``auth.challenged``).

On an ``mcp = true`` route the proxy has a second step once it has read a ``tools/call``
(``authorize_tool``): the tool's scopes on top of the route's (``mcp.py``), refused as a
``Denied`` like the first step's, counted alike (``tool_scope``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import Config
from gateway.dpop import Checker
from gateway.dpop_challenges import DpopInsufficientScope
from gateway.errors import BearerError, GatewayError, InsufficientScope, MethodOverrideRefused
from gateway.hosts import Host, HostCache
from gateway.introspect.validator import AccessToken, BearerValidator
from gateway.metrics import Metrics
from gateway.proxy.assertion import AssertionSigner
from gateway.proxy.auth import authenticate, authorize, challenged
from gateway.proxy.headers import UNDERSCORE, Header, HeaderPolicy
from gateway.proxy.mcp import McpGuard
from gateway.proxy.overrides import OVERRIDABLE, overriding_method
from gateway.proxy.paths import decode_path
from gateway.proxy.routes import Route, RouteTable
from gateway.resources import Resources


@dataclass(slots=True)
class Allowed:
    route: Route
    #: the decoded path the route matched
    path: str
    #: identity headers (and the assertion) to send upstream; empty on a public route
    identity: list[Header]
    #: the normalised host (None without one), for the forwarding headers
    host: Host | None
    #: the validated token (None on a public route), for the access log
    token: AccessToken | None = None
    #: the overriding method decided on, upper-cased; None when no override is honoured
    method_override: str | None = None


@dataclass(slots=True)
class Denied:
    error: GatewayError
    #: the route, once one matched (a 401 or 403)
    route: Route | None
    #: the validated token, when scopes refused it (a 403), for the access log
    token: AccessToken | None = None


class DecisionCore:
    def __init__(
        self,
        config: Config,
        validator: BearerValidator,
        headers: HeaderPolicy,
        metrics: Metrics,
        resources: Resources,
        dpop: Checker,
    ) -> None:
        self._metrics = metrics
        #: DPoP proofs (RFC 9449): the gateway's one checker, shared with the token endpoint
        self.dpop = dpop
        self.routes = RouteTable.from_config(config.routes, resources)
        self._hosts = HostCache()
        self._validator = validator
        self._audience = config.audience
        self._headers = headers
        self._signer = (
            AssertionSigner(validator.keyring, config.issuer, config.proxy.assertion)
            if config.proxy.assertion.enabled
            else None
        )
        self._assertion_header = config.proxy.assertion.header.lower().encode("latin-1")

    def decide(
        self,
        raw_path: bytes,
        raw_host: bytes | None,
        method: str,
        authorization: list[str],
        method_overrides: tuple[Header, ...] = (),
        *,
        drops_overrides: bool = False,
        proofs: Sequence[str] = (),
        origin: str | None = None,
    ) -> Allowed | Denied:
        """Decide on one request: ``raw_path`` as sent (percent-encoded, without the query),
        ``raw_host`` as sent (None or empty: no host), ``authorization`` every
        ``Authorization`` value, ``method_overrides`` the override headers as sent.
        ``drops_overrides``: the door keeps those headers from the upstream unless the decision
        honours them (the proxy), so one not honoured is dropped there rather than refused.
        ``proofs``: every ``DPoP`` value; ``origin``: ``scheme://host`` as the client used it,
        needed with a proof only (the proof's ``htu`` is the origin and ``raw_path``)."""
        route: Route | None = None
        token: AccessToken | None = None
        override: str | None = None
        try:
            # RFC 9112 §3.2: an empty Host stands for no authority, as a missing one does
            host = self._hosts.parse(raw_host) if raw_host else None
            path = decode_path(raw_path)
            route = self.routes.match(host and host.name, path, method)
            if method_overrides:
                route, override = self._override(
                    route, host, path, method, method_overrides, drops_overrides
                )
            if route.config.public:
                return Allowed(route, path, [], host, None, override)
            url = f"{origin}{raw_path.decode('latin-1')}" if proofs and origin else ""
            token = authenticate(
                self._validator,
                route,
                authorization,
                self._audience,
                self.dpop,
                proofs,
                method,
                url,
            )
            authorize(route, token)
            identity = self._headers.identity(token)
        except GatewayError as exc:
            if isinstance(exc, BearerError):
                self._metrics.token_failed(exc.reason)
                if route is not None:
                    challenged(route, exc)
            return Denied(exc, route, token)
        if self._signer is not None:
            assertion = self._signer.assertion(token, route.assertion_audience)
            identity = [*identity, (self._assertion_header, assertion)]
        return Allowed(route, path, identity, host, token, override)

    def authorize_tool(self, allowed: Allowed, guard: McpGuard, tool: str) -> Denied | None:
        """After ``decide`` allowed a request to an ``mcp = true`` route (``guard``, its rules)
        whose body is a ``tools/call`` of ``tool``: may the token call it? None when it may.
        Such a route is never public (``config.load``), so the request had a token."""
        route, token = allowed.route, allowed.token
        assert token is not None, "an mcp = true route is never public"
        try:
            guard.authorize(tool, token.scopes)
        except GatewayError as exc:
            if token.jkt is not None and isinstance(exc, InsufficientScope):
                exc = DpopInsufficientScope.of(exc)  # in the scheme the token came with
            self._metrics.token_failed(exc.reason)
            if isinstance(exc, BearerError):
                challenged(route, exc)
            return Denied(exc, route, token)
        return None

    def _override(
        self,
        route: Route,
        host: Host | None,
        path: str,
        method: str,
        headers: tuple[Header, ...],
        droppable: bool,
    ) -> tuple[Route, str | None]:
        """The route to decide on, and the overriding method when the override is honoured
        (see ``overrides.py``); raise when it is refused."""
        overriding = overriding_method(value for _, value in headers)
        if method == OVERRIDABLE and route.config.allow_method_override:
            target = self.routes.match(host and host.name, path, overriding)
            if target.config.allow_method_override and (
                droppable or not any(UNDERSCORE in name for name, _ in headers)
            ):
                return target, overriding
        if droppable:
            return route, None
        raise MethodOverrideRefused()
