"""Loading the configuration: one TOML file, read once at start into the tree of
``gateway.config.model``.

``load_config(path)`` is the only entry point. Unknown keys and wrong types raise
``ConfigError`` naming the file and the dotted key, so a typo fails the start instead of
silently falling back to a default; values that cannot work together (an issuer on plain http
off loopback, a route path under the gateway's own, a bad trusted network) are refused alike.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config.checks import validate_protocols
from gateway.config.model import (
    DPOP_MODES,
    LOG_FORMATS,
    LOOPBACK_HOSTS,
    SIGNING_ALGORITHMS,
    Config,
    RouteConfig,
    is_reserved,
    resolve_path,
)
from gateway.errors import ConfigError
from gateway.hosts import parse_host

_NOT_LOADED = ("base_dir", "routes")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path`` (or ``$GATEWAY_CONFIG``); with neither, the defaults rooted at the cwd."""
    if path is None:
        path = os.environ.get("GATEWAY_CONFIG") or None
    if path is None:
        return _validate(Config(base_dir=os.getcwd()), "<defaults>")
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    base_dir = str(file.resolve().parent)
    try:
        routes = _load_routes(data.pop("routes", []), base_dir)
        config = _build(Config, data, "")
    except _KeyError as exc:
        raise ConfigError(f"{file}: {exc.key}: {exc.problem}") from None
    config = dataclasses.replace(config, routes=routes, base_dir=base_dir)
    return _validate(config, str(file))


class _KeyError(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def _build(cls: type, table: Any, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise _KeyError(prefix.rstrip(".") or "<root>", "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_LOADED}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        dotted = prefix + key
        if key not in fields:
            raise _KeyError(dotted, "unknown key")
        values[key] = _convert(hints[key], raw, dotted)
    return cls(**values)


def _convert(hint: Any, raw: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), raw, key + ".")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], raw, key)
    if origin is tuple:
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise _KeyError(key, "must be a list of strings")
        return tuple(raw)
    if origin is dict:
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise _KeyError(key, "must be a table of strings")
        return dict(raw)
    if hint is bool:
        if not isinstance(raw, bool):
            raise _KeyError(key, "must be true or false")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _KeyError(key, "must be an integer")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _KeyError(key, "must be a number")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise _KeyError(key, "must be a string")
        return raw
    raise _KeyError(key, f"unsupported type {hint!r}")  # pragma: no cover - programming error


def _load_routes(raw: Any, base_dir: str) -> tuple[RouteConfig, ...]:
    if not isinstance(raw, list):
        raise _KeyError("routes", "must be an array of tables ([[routes]])")
    routes = []
    for i, table in enumerate(raw):
        prefix = f"routes[{i}]."
        if not isinstance(table, dict):
            raise _KeyError(f"routes[{i}]", "must be a table")
        table = dict(table)
        scopes = _load_scopes(table.pop("scopes", []), prefix + "scopes")
        tool_scopes = _load_tool_scopes(
            table.pop("mcp_tool_scopes", {}), prefix + "mcp_tool_scopes"
        )
        for required in ("path", "upstream"):
            if required not in table:
                raise _KeyError(prefix + required, "is required")
        route = _build(RouteConfig, table, prefix)
        route = dataclasses.replace(route, scopes=scopes, mcp_tool_scopes=tool_scopes)
        if route.tls_ca is not None:
            tls_ca = resolve_path(base_dir, route.tls_ca)
            if not tls_ca.is_file():
                raise _KeyError(prefix + "tls_ca", f"no such file: {tls_ca}")
            route = dataclasses.replace(route, tls_ca=str(tls_ca))
        routes.append(_validate_route(route, prefix))
    return tuple(routes)


def _load_scopes(raw: Any, key: str) -> tuple[tuple[str, ...], ...]:
    """``["a", "b"]`` means one set {a, b}; ``[["a", "b"], ["admin"]]`` means any of the sets."""
    if not isinstance(raw, list):
        raise _KeyError(key, "must be a list of scopes or a list of scope lists")
    if all(isinstance(s, str) for s in raw):
        return (tuple(raw),) if raw else ()
    if all(isinstance(s, list) and s and all(isinstance(x, str) for x in s) for s in raw):
        return tuple(tuple(s) for s in raw)
    raise _KeyError(key, "must be a list of scopes or a list of non-empty scope lists")


def _load_tool_scopes(raw: Any, key: str) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    """``{"read_*" = [], "delete_*" = ["admin"]}``: tool-name globs in file order, each with
    scope sets shaped as a route's ``scopes``."""
    if not isinstance(raw, dict):
        raise _KeyError(key, 'must be a table of tool-name patterns ({ "name_*" = ["scope"] })')
    table = []
    for pattern, scopes in raw.items():
        if not pattern:
            raise _KeyError(key, "a tool-name pattern must not be empty")
        table.append((pattern, _load_scopes(scopes, f"{key}.{pattern}")))
    return tuple(table)


def _validate_route(route: RouteConfig, prefix: str) -> RouteConfig:
    path = route.path
    if not path.startswith("/"):
        raise _KeyError(prefix + "path", "must start with '/'")
    if (
        any(c in path for c in "?#%\\")
        or "//" in path
        or "/./" in path + "/"
        or "/../" in (path + "/")
    ):
        raise _KeyError(
            prefix + "path",
            "must be a plain path without '?', '#', '%', '\\', '//' or dot segments",
        )
    if len(path) > 1:
        path = path.rstrip("/")
    if is_reserved(path):
        raise _KeyError(prefix + "path", "is reserved for the gateway's own endpoints")
    up = urlsplit(route.upstream)
    if up.scheme not in ("http", "https") or not up.hostname:
        raise _KeyError(prefix + "upstream", "must be an http:// or https:// URL")
    if up.query or up.fragment:
        raise _KeyError(prefix + "upstream", "must not carry a query or fragment")
    if up.username is not None or up.password is not None:
        # credentials in the URL would be silently dropped: say so rather than surprise
        raise _KeyError(prefix + "upstream", "must not carry credentials (user:password@)")
    try:
        up.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        raise _KeyError(prefix + "upstream", "has an invalid port") from None
    if up.scheme != "https":
        if route.tls_ca is not None:
            raise _KeyError(prefix + "tls_ca", "applies to https:// upstreams only")
        if not route.tls_verify:
            raise _KeyError(prefix + "tls_verify", "applies to https:// upstreams only")
    if route.tls_ca is not None and not route.tls_verify:
        raise _KeyError(prefix + "tls_ca", "is never used with tls_verify = false")
    methods = None
    if route.methods is not None:
        if not route.methods:
            raise _KeyError(prefix + "methods", "must not be empty (leave it out for any method)")
        methods = tuple(sorted({m.upper() for m in route.methods}))
        if "GET" in methods and "HEAD" not in methods:
            methods = tuple(sorted((*methods, "HEAD")))
    if route.timeout <= 0:
        raise _KeyError(prefix + "timeout", "must be positive")
    if route.public and route.scopes:
        raise _KeyError(prefix + "scopes", "a public route cannot require scopes")
    if route.assertion_audience is not None and not route.assertion_audience.strip():
        raise _KeyError(prefix + "assertion_audience", "must not be empty")
    if route.resource_name is not None and not route.resource_name.strip():
        raise _KeyError(prefix + "resource_name", "must not be empty")
    if route.resource_documentation is not None and not _is_web_url(route.resource_documentation):
        raise _KeyError(prefix + "resource_documentation", "must be an http(s) URL")
    if route.mcp_max_body <= 0:
        raise _KeyError(prefix + "mcp_max_body", "must be positive")
    if route.mcp_tool_scopes and not route.mcp:
        raise _KeyError(prefix + "mcp_tool_scopes", "applies to mcp = true routes only")
    if route.mcp and route.allow_method_override:
        # the upstream would act on another method than the POST whose message was checked
        raise _KeyError(prefix + "allow_method_override", "an mcp = true route takes none")
    if route.mcp and route.public:
        # deny by default would refuse every tool, and no token could carry a tool's scopes
        raise _KeyError(
            prefix + "mcp", "a public route takes no token: its tools cannot be checked"
        )
    if route.dpop not in DPOP_MODES:
        raise _KeyError(prefix + "dpop", 'must be "allowed" or "required"')
    if route.public and route.dpop == "required":
        raise _KeyError(prefix + "dpop", "a public route takes no token")
    host = None if route.host is None else _route_host(route.host, prefix)
    name = route.name or (f"{host}{path}" if host else path)
    return dataclasses.replace(route, path=path, methods=methods, host=host, name=name)


def _route_host(value: str, prefix: str) -> str:
    """A route's ``host``, normalised as requests' hosts are (``gateway.hosts``)."""
    try:
        host = parse_host(value)
    except ValueError:
        raise _KeyError(
            prefix + "host",
            "must be a host name (letters, digits, '-' and '_' in dot-separated labels), "
            "an IPv4 address or a bracketed IPv6 address",
        ) from None
    if host.authority != host.name:
        raise _KeyError(prefix + "host", "must not carry a port (routes match any port)")
    return host.name


def _is_web_url(value: str) -> bool:
    """An absolute http(s) URL with a host, written with URI characters only."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https") and bool(parts.hostname) and bool(_URI.fullmatch(value))
    )


def resource_identifier_problem(identifier: str) -> str | None:
    """Why ``identifier`` cannot name a protected resource (RFC 8707 §2, RFC 9728 §1.2), or
    None: an absolute https:// URI (http:// on a loopback host) without query or fragment."""
    try:
        parts = urlsplit(identifier)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return "is not a valid URI"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute https:// URI"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return "must be https:// (plain http only on a loopback host)"
    if "#" in identifier:
        return "must not carry a fragment"
    if "?" in identifier:
        return "must not carry a query"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if any(c.isspace() for c in identifier):
        return "must not contain white space"
    if not _URI.fullmatch(identifier):
        # it is sent in headers (the resource_metadata challenge) and compared as a string
        return "must be written with URI characters only (RFC 3986; others percent-encoded)"
    try:
        parse_host(parts.netloc)
    except ValueError:
        return "must name a valid host"
    return None


#: RFC 3986 §2: unreserved and reserved characters, and percent-encoded octets
_URI = re.compile(r"(?:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*")


def _metadata_location(identifier: str) -> tuple[str, str]:
    """Where a resource's metadata is served (RFC 9728 §3.1): its host as ``Host`` names it
    (``gateway.hosts``, the scheme's default port dropped) and its path (a lone "/" dropped),
    for telling apart identifiers that are different strings for one location."""
    parts = urlsplit(identifier)
    host = parse_host(parts.netloc)
    default = parts.port is None or parts.port == {"http": 80, "https": 443}[parts.scheme]
    return (host.name if default else host.authority, "" if parts.path == "/" else parts.path)


def _validate_resources(config: Config, where: str) -> None:
    """Every route's resource identifier is usable; routes sharing one agree on its name."""
    names: dict[str, tuple[str, str]] = {}
    locations: dict[tuple[str, str], str] = {}
    for i, route in enumerate(config.routes):
        identifier = config.resource_identifier(route)
        key = "audience" if route.audience else "audience (tokens.audience or the issuer)"
        if (route.audience or not route.public) and (
            problem := resource_identifier_problem(identifier)
        ):
            raise ConfigError(
                f"{where}: routes[{i}] ({route.name}): {key}: resource identifier "
                f"{identifier!r} {problem}"
            )
        if not route.public:
            # two resources whose metadata would be one document: a client could not tell
            # which it was given (RFC 9728 §3.3 compares the identifier as a string)
            other = locations.setdefault(_metadata_location(identifier), identifier)
            if other != identifier:
                raise ConfigError(
                    f"{where}: routes[{i}] ({route.name}): {key}: resource identifier "
                    f"{identifier!r} and {other!r} differ but would publish their metadata "
                    "at the same URL: spell them alike"
                )
        for attr in ("resource_name", "resource_documentation"):
            value = getattr(route, attr)
            if value is None:
                continue
            seen = names.setdefault(f"{identifier} {attr}", (value, route.name))
            if seen[0] != value:
                raise ConfigError(
                    f"{where}: routes[{i}] ({route.name}): {attr}: {value!r} differs from "
                    f"{seen[0]!r} given by route {seen[1]!r} for the same resource {identifier!r}"
                )


def _validate(config: Config, where: str) -> Config:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {problem}")

    iss = urlsplit(config.issuer)
    if iss.scheme not in ("http", "https") or not iss.hostname or iss.query or iss.fragment:
        raise fail("issuer", "must be an http(s) URL without query or fragment")
    if iss.scheme == "http" and iss.hostname not in LOOPBACK_HOSTS:
        # OAuth 2.0 requires TLS (RFC 6749 §3.1, §3.2); behind a TLS-terminating proxy, the
        # issuer is the public https:// URL
        raise fail("issuer", "must be https:// (plain http only on a loopback host)")
    if config.keys.algorithm not in SIGNING_ALGORITHMS:
        raise fail("keys.algorithm", f"must be one of {', '.join(SIGNING_ALGORITHMS[:3])}")
    for key, value in (
        ("server.port", config.server.port),
        ("server.workers", config.server.workers),
        ("server.max_request_head", config.server.max_request_head),
        ("server.max_header_fields", config.server.max_header_fields),
        ("server.head_timeout", config.server.head_timeout),
        ("server.keep_alive_timeout", config.server.keep_alive_timeout),
        ("server.max_connections", config.server.max_connections),
        ("throttle.device_ttl", config.throttle.device_ttl),
        ("tokens.access_token_ttl", config.tokens.access_token_ttl),
        ("tokens.refresh_token_ttl", config.tokens.refresh_token_ttl),
        ("tokens.authorization_code_ttl", config.tokens.authorization_code_ttl),
        ("revocation.sync_interval", config.revocation.sync_interval),
        ("revocation.max_staleness", config.revocation.max_staleness),
        ("keys.reload_interval", config.keys.reload_interval),
        ("housekeeping.interval", config.housekeeping.interval),
        ("throttle.max_failures", config.throttle.max_failures),
        ("throttle.window", config.throttle.window),
        ("throttle.max_address_failures", config.throttle.address_budget),
        ("passwords.max_concurrent", config.passwords.max_concurrent),
        ("proxy.max_connections_per_origin", config.proxy.max_connections_per_origin),
        ("proxy.pool_idle_timeout", config.proxy.pool_idle_timeout),
        ("proxy.pool_max_age", config.proxy.pool_max_age),
        ("proxy.assertion.ttl", config.proxy.assertion.ttl),
        ("sessions.lifetime", config.sessions.lifetime),
        ("sessions.idle_timeout", config.sessions.idle_timeout),
    ):
        if value <= 0:
            raise fail(key, "must be positive")
    if not 0 < config.server.port < 65536:
        raise fail("server.port", "must be between 1 and 65535")
    for key, value in (
        ("keys.activation_delay", config.keys.activation_delay),
        ("tokens.leeway", config.tokens.leeway),
        ("tokens.refresh_reuse_grace", config.tokens.refresh_reuse_grace),
        ("throttle.max_user_delay", config.throttle.max_user_delay),
        ("passwords.max_queued", config.passwords.queue_bound),
    ):
        if value < 0:
            raise fail(key, "must not be negative")
    if not config.database.url:
        raise fail("database.url", "must not be empty")
    if config.logging.format is not None and config.logging.format not in LOG_FORMATS:
        raise fail("logging.format", 'must be "json", "text" or "off"')
    for key, peers in (
        ("proxy.trusted_proxies", config.proxy.trusted_proxies),
        ("decisions.trusted_peers", config.decisions.trusted_peers),
    ):
        for peer in peers:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError:
                raise fail(key, f"{peer!r} is not an IP address or network") from None
    seen: set[str] = set()
    for key, name in (
        *(("proxy.identity_headers", name) for name in config.proxy.identity_headers.names()),
        ("proxy.assertion.header", config.proxy.assertion.header),
    ):
        canonical = name.lower().replace("_", "-")
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise fail(key, f"{name!r} is not a valid header name")
        if canonical in seen:
            raise fail(key, f"{name!r} is used twice")
        seen.add(canonical)
    _validate_resources(config, where)
    validate_protocols(config, fail)
    return config
