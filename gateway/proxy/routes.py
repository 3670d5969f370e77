"""The route table: which upstream serves a request, and what the request must carry.

Precedence, most specific first:

1. a route naming the request's host before a host-less one (hosts compare normalised,
   ``gateway.hosts``: lower-case, without a trailing dot or the port);
2. a longer path before a shorter one (a path is a prefix on a segment boundary: ``/orders``
   matches ``/orders`` and ``/orders/1``, never ``/ordersx``);
3. a route listing methods before an any-method route.

The most specific (host, path) pair that matches decides alone: when none of its routes
accepts the method the answer is 405 with ``Allow`` (RFC 9110 §15.5.6), never a fall-through
to a shorter, possibly less protected, route. Two routes that are equally specific and could
match the same request are refused when the table is built.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.config import RouteConfig
from gateway.errors import ConfigError, MethodNotAllowed, RouteNotFound
from gateway.proxy.http1.origin import Origin
from gateway.proxy.mcp import McpGuard
from gateway.resources import Resource, Resources

log = logging.getLogger("gateway.proxy")


@dataclass(frozen=True, slots=True)
class Route:
    """A ``RouteConfig`` with what the hot path needs computed once."""

    config: RouteConfig
    name: str
    #: where the upstream client connects: host, port, Host field, TLS settings
    upstream: Origin
    #: the upstream URL's path without a trailing slash ("" for none)
    base_path: str
    #: alternatives: the token passes when it holds every scope of any one set
    scope_sets: tuple[frozenset[str], ...]
    #: the ``aud`` of this route's identity assertions: configured, or the upstream's origin
    assertion_audience: str
    #: the protected resource the route belongs to (None: a public route), whose metadata URL
    #: its challenges name (RFC 9728 §5.1)
    resource: Resource | None = None
    #: what a 401's challenge asks for: the first scope set, space-separated (None: no scopes)
    challenge_scope: str | None = None
    #: ``mcp = true``: how its messages are read and its tools decided on (``mcp.py``)
    mcp: McpGuard | None = None

    @classmethod
    def from_config(
        cls, config: RouteConfig, upstream: Origin, resource: Resource | None = None
    ) -> Route:
        """The route for ``config``, connecting to ``upstream`` (shared by routes to one
        origin with the same TLS settings), part of ``resource``."""
        return cls(
            config=config,
            name=config.name,
            upstream=upstream,
            base_path=urlsplit(config.upstream).path.rstrip("/"),
            scope_sets=tuple(frozenset(s) for s in config.scopes),
            assertion_audience=config.assertion_audience
            or f"{upstream.scheme}://{upstream.host_header.decode('ascii')}",
            resource=resource,
            challenge_scope=" ".join(config.scopes[0]) if config.scopes else None,
            mcp=McpGuard.from_config(config),
        )

    def upstream_path(self, path: str) -> str:
        """The decoded path the upstream receives for the decoded request ``path``."""
        if self.config.strip_prefix and self.config.path != "/":
            path = path[len(self.config.path) :] or "/"
        return self.base_path + path


@dataclass(slots=True)
class _Level:
    """The routes sharing one (host, path): at most one per method, plus one for any method."""

    by_method: dict[str, Route]
    any_method: Route | None = None

    def add(self, route: Route) -> None:
        methods = route.config.methods
        if methods is None:
            if self.any_method is not None:
                raise _ambiguous(self.any_method, route, "any method")
            self.any_method = route
            return
        for method in methods:
            other = self.by_method.get(method)
            if other is not None:
                raise _ambiguous(other, route, method)
            self.by_method[method] = route

    def select(self, method: str) -> Route:
        route = self.by_method.get(method) or self.any_method
        if route is None:
            raise MethodNotAllowed(sorted(self.by_method))
        return route


def _origin(config: RouteConfig) -> Origin:
    """Build the route's ``Origin``; a CA bundle that cannot be loaded is a ``ConfigError``."""
    try:
        return Origin.from_url(config.upstream, config.tls_ca, config.tls_verify)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"routes: {config.name!r}: upstream TLS settings: {exc}") from None


def _ambiguous(a: Route, b: Route, method: str) -> ConfigError:
    where = f"{a.config.host or ''}{a.config.path}"
    return ConfigError(
        f"routes: {a.name!r} and {b.name!r} are equally specific and both match {method} {where}"
    )


#: up to this many distinct paths per host, a match scans them longest first (no allocation:
#: ``startswith`` and a boundary check); past it, one dict probe per segment of the request
SCAN_LIMIT = 16


class _Paths:
    """One host's levels by route path, and the order a match tries them in."""

    __slots__ = ("_by_path", "_longest_first")

    def __init__(self, by_path: dict[str, _Level]) -> None:
        self._by_path = by_path
        self._longest_first = (
            tuple(sorted(by_path.items(), key=lambda item: len(item[0]), reverse=True))
            if len(by_path) <= SCAN_LIMIT
            else None
        )

    def longest_prefix(self, path: str) -> _Level | None:
        """The level of the longest route path that is ``path`` or a parent segment of it.

        Route paths are normalised at load (no trailing ``/`` but for ``/`` itself)."""
        if self._longest_first is None:
            return _probe(self._by_path, path)
        for prefix, level in self._longest_first:
            if path.startswith(prefix):
                end = len(prefix)
                if len(path) == end or path[end] == "/" or prefix == "/":
                    return level
        return None


class RouteTable:
    def __init__(self, levels: dict[str | None, dict[str, _Level]]) -> None:
        #: host -> the levels of its routes; then those of the routes for any host
        self._hosts = {host: _Paths(by_path) for host, by_path in levels.items() if host}
        self._any_host = _Paths(levels[None]) if None in levels else None

    @classmethod
    def from_config(
        cls, routes: tuple[RouteConfig, ...], resources: Resources | None = None
    ) -> RouteTable:
        """Build the table; raise ``ConfigError`` naming both routes of an ambiguous pair.
        ``resources``: the registry the routes' resources come from (the gateway's; without
        it, as when only checking the table, the routes' challenges name no metadata)."""
        levels: dict[str | None, dict[str, _Level]] = {}
        #: routes to the same upstream with the same TLS settings share one Origin (one pool)
        origins: dict[tuple[str, str | None, bool], Origin] = {}
        for config in routes:
            if not config.tls_verify:
                log.warning(
                    "route %r: tls_verify = false: the upstream's certificate is not verified",
                    config.name,
                )
            url = urlsplit(config.upstream)
            key = (f"{url.scheme}://{url.netloc}", config.tls_ca, config.tls_verify)
            upstream = origins.get(key) or origins.setdefault(key, _origin(config))
            by_path = levels.setdefault(config.host, {})
            resource = resources.of(config) if resources is not None else None
            by_path.setdefault(config.path, _Level({})).add(
                Route.from_config(config, upstream, resource)
            )
        return cls(levels)

    def match(self, host: str | None, path: str, method: str) -> Route:
        """The route for a decoded ``path`` on ``host`` (a ``Host.name``: normalised, without
        the port); ``RouteNotFound`` or ``MethodNotAllowed``."""
        if host is not None and self._hosts:
            paths = self._hosts.get(host)
            if paths is not None:
                level = paths.longest_prefix(path)
                if level is not None:
                    return level.select(method)
        if self._any_host is not None:
            level = self._any_host.longest_prefix(path)
            if level is not None:
                return level.select(method)
        raise RouteNotFound()


def _probe(by_path: dict[str, _Level], path: str) -> _Level | None:
    """Look ``path`` and each of its parents up, longest first: one dict probe per segment."""
    candidate = path.rstrip("/") or "/"
    while True:
        level = by_path.get(candidate)
        if level is not None:
            return level
        if candidate == "/":
            return None
        candidate = candidate[: candidate.rfind("/")] or "/"
