"""Configuration: one TOML file loaded once at start into a tree of frozen dataclasses.

``load_config(path)`` is the only entry point. Unknown keys and wrong types raise
``ConfigError`` naming the file and the dotted key, so a typo fails the start instead of
silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError
from gateway.hosts import parse_host

DEFAULT_ISSUER = "http://127.0.0.1:8000"
SIGNING_ALGORITHMS = ("RS256", "ES256", "EdDSA", "Ed25519")
LOG_FORMATS = ("json", "text", "off")
GRANT_TYPES = ("authorization_code", "password", "refresh_token", "client_credentials")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
#: the gateway's own paths: routes may not claim them, and requests there never reach the proxy
RESERVED_PREFIXES = ("/oauth", "/.well-known", "/healthz", "/readyz", "/metrics", "/decisions")
#: where edges (nginx auth_request, Caddy forward_auth, Traefik, Envoy ext_authz) ask for decisions
DECISIONS_PREFIX = "/decisions"
_RESERVED_BELOW = tuple(prefix + "/" for prefix in RESERVED_PREFIXES)


def is_reserved(path: str) -> bool:
    """``path`` is one of the gateway's own paths, or below one."""
    return path in RESERVED_PREFIXES or path.startswith(_RESERVED_BELOW)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    #: bytes a request line and its header block may take together; past it, 431 and close
    max_request_head: int = 65536
    #: header fields a request may carry; past it, 431 and close
    max_header_fields: int = 100
    #: seconds for a request's head to arrive whole, from the connection's opening or the end
    #: of the previous response; past it the connection is closed (408 if a byte had come)
    head_timeout: float = 10.0
    #: seconds a kept-alive connection may wait for the first byte of its next request
    keep_alive_timeout: float = 5.0
    #: client connections one process holds open at once; past it, 503 and close
    max_connections: int = 10000


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///gateway.db"


@dataclass(frozen=True)
class KeysConfig:
    dir: str = "keys"
    algorithm: str = "RS256"
    activation_delay: int = 0
    #: seconds between looks at ``dir`` for keys rotated or retired by another process
    reload_interval: float = 2.0


@dataclass(frozen=True)
class TokensConfig:
    audience: str = ""
    access_token_ttl: int = 600
    refresh_token_ttl: int = 1209600
    authorization_code_ttl: int = 60
    rotate_refresh_tokens: bool = True
    #: seconds after a rotation in which the rotated refresh token, presented again, gets the
    #: same successor (concurrent tabs) instead of revoking the family; 0: never
    refresh_reuse_grace: float = 0.0
    #: clock skew allowed on exp / nbf / iat when validating, in seconds
    leeway: int = 30


@dataclass(frozen=True)
class RevocationConfig:
    sync_interval: float = 1.0
    max_staleness: float = 30.0
    #: on PostgreSQL, push revocations to every replica with LISTEN/NOTIFY (polling stays on)
    notify: bool = True


@dataclass(frozen=True)
class MetricsConfig:
    #: serve GET /metrics (Prometheus text format) on the gateway's port
    enabled: bool = True


@dataclass(frozen=True)
class LoggingConfig:
    #: the access log on stderr: "json", "text" or "off"; unset: json under ``serve``, text
    #: under ``demo``
    format: str | None = None


@dataclass(frozen=True)
class HousekeepingConfig:
    #: seconds between prunes of expired codes, refresh tokens, grants and revocations
    interval: float = 300.0


@dataclass(frozen=True)
class ThrottleConfig:
    """Failed password logins, counted in the database over a sliding ``window`` (seconds);
    the policy is gateway/throttle.py's and the README's.

    ``max_failures``: per (user, client address); ``max_address_failures``: per client address
    over all users (default four times ``max_failures``); past ``max_failures`` for one user
    over all addresses, a growing delay between attempts, at most ``max_user_delay`` seconds."""

    max_failures: int = 5
    window: int = 300
    max_address_failures: int | None = None
    max_user_delay: float = 5.0
    #: seconds a known-device cookie (set at a successful sign-in on the login page) exempts
    #: its user's attempts from the per-user delay
    device_ttl: float = 2592000.0

    @property
    def address_budget(self) -> int:
        if self.max_address_failures is None:
            return 4 * self.max_failures
        return self.max_address_failures


@dataclass(frozen=True)
class PasswordsConfig:
    """Argon2id verifications (login form, password grant) run on a pool of their own."""

    #: verifications running at once, each on a thread of its own (default: the CPU count)
    max_concurrent: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: verifications admitted to wait for a thread; past it, 503 temporarily_unavailable
    #: (default: 4 x max_concurrent)
    max_queued: int | None = None

    @property
    def queue_bound(self) -> int:
        return 4 * self.max_concurrent if self.max_queued is None else self.max_queued


@dataclass(frozen=True)
class IdentityHeaders:
    user: str = "X-Forwarded-User"
    email: str = "X-Forwarded-Email"
    client_id: str = "X-Forwarded-Client-Id"
    scopes: str = "X-Forwarded-Scopes"

    def names(self) -> tuple[str, ...]:
        return (self.user, self.email, self.client_id, self.scopes)


@dataclass(frozen=True)
class AssertionConfig:
    """The signed identity assertion sent with the identity headers (``[proxy.assertion]``)."""

    enabled: bool = False
    header: str = "X-Gateway-Assertion"
    #: seconds; an assertion never outlives the access token it was made from
    ttl: float = 60.0


@dataclass(frozen=True)
class PoolConfig:
    """The upstream client's keep-alive pool, per origin (``[proxy]`` keys of the same names)."""

    max_connections_per_origin: int = 256
    #: seconds a kept-alive connection may sit idle before it is closed
    pool_idle_timeout: float = 15.0
    #: seconds after which a connection is closed once its exchange ends, however busy
    pool_max_age: float = 300.0


@dataclass(frozen=True)
class ProxyConfig:
    trusted_proxies: tuple[str, ...] = ()
    identity_headers: IdentityHeaders = field(default_factory=IdentityHeaders)
    assertion: AssertionConfig = field(default_factory=AssertionConfig)
    connect_timeout: float = 5.0
    idle_timeout: float = 60.0
    max_connections_per_origin: int = PoolConfig.max_connections_per_origin
    pool_idle_timeout: float = PoolConfig.pool_idle_timeout
    pool_max_age: float = PoolConfig.pool_max_age

    @property
    def pool(self) -> PoolConfig:
        return PoolConfig(
            max_connections_per_origin=self.max_connections_per_origin,
            pool_idle_timeout=self.pool_idle_timeout,
            pool_max_age=self.pool_max_age,
        )


@dataclass(frozen=True)
class RouteConfig:
    path: str
    upstream: str
    name: str = ""
    host: str | None = None
    methods: tuple[str, ...] | None = None
    #: alternatives: the request passes when the token holds every scope of any one set
    scopes: tuple[tuple[str, ...], ...] = ()
    public: bool = False
    strip_prefix: bool = False
    audience: str | None = None
    forward_token: bool = False
    timeout: float = 30.0
    #: https:// upstreams: a CA bundle (PEM) to verify the upstream with instead of the
    #: system store; relative to the config file's folder
    tls_ca: str | None = None
    #: https:// upstreams: false skips certificate verification (logged as a warning)
    tls_verify: bool = True
    #: the identity assertion's ``aud`` (default: the upstream's origin, scheme://host:port)
    assertion_audience: str | None = None
    #: honour ``X-HTTP-Method-Override`` (and ``X-HTTP-Method``, ``X-Method-Override``): the
    #: overriding method is the one matched and checked; false: those headers are dropped
    allow_method_override: bool = False


@dataclass(frozen=True)
class SessionsConfig:
    """The browser login session (single sign-on across clients, OpenID Connect ``sid``)."""

    #: seconds from login after which the session ends, however active (absolute)
    lifetime: float = 28800.0
    #: seconds without an authorization request after which the session ends
    idle_timeout: float = 3600.0
    #: logout also revokes the grants (hence every token) made in the session
    logout_revokes_tokens: bool = False


@dataclass(frozen=True)
class ScopesConfig:
    #: what the consent page says a scope lets the client do: ``"orders:read" = "See your
    #: orders"``; ``openid``, ``profile`` and ``email`` have built-in texts, other scopes
    #: without one are shown by name
    descriptions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionsConfig:
    #: peers (IPs / CIDRs) that may ask ``/decisions``: the edges; anyone else is refused 403
    trusted_peers: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class Config:
    issuer: str = DEFAULT_ISSUER
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    revocation: RevocationConfig = field(default_factory=RevocationConfig)
    housekeeping: HousekeepingConfig = field(default_factory=HousekeepingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    passwords: PasswordsConfig = field(default_factory=PasswordsConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    decisions: DecisionsConfig = field(default_factory=DecisionsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    scopes: ScopesConfig = field(default_factory=ScopesConfig)
    routes: tuple[RouteConfig, ...] = ()
    #: folder that relative paths resolve against (the config file's folder)
    base_dir: str = "."

    @property
    def audience(self) -> str:
        return self.tokens.audience or self.issuer

    @property
    def keys_dir(self) -> Path:
        return _resolve(self.base_dir, self.keys.dir)

    @property
    def database_url(self) -> str:
        return resolve_database_url(self.database.url, self.base_dir)


def _resolve(base: str, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base) / p


def resolve_database_url(url: str, base_dir: str) -> str:
    """Make a relative SQLite path absolute against ``base_dir``; leave other URLs alone."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != prefix and not url.startswith(prefix + ":memory:"):
        rest = url[len(prefix) :]
        path, sep, query = rest.partition("?")
        if not os.path.isabs(path):
            path = str((Path(base_dir) / path).resolve())
        return prefix + path + sep + query
    return url


# --- loading -------------------------------------------------------------------------------

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
        for required in ("path", "upstream"):
            if required not in table:
                raise _KeyError(prefix + required, "is required")
        route = _build(RouteConfig, table, prefix)
        route = dataclasses.replace(route, scopes=scopes)
        if route.tls_ca is not None:
            tls_ca = _resolve(base_dir, route.tls_ca)
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
    return config
