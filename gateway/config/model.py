"""The configuration's tree: frozen dataclasses, one per TOML table, with their defaults, and
the constants the rest of the gateway shares with them (its own paths, the grant types, the
signing algorithms). ``gateway.config.load`` fills the tree from a file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ISSUER = "http://127.0.0.1:8000"
SIGNING_ALGORITHMS = ("RS256", "ES256", "EdDSA", "Ed25519")
LOG_FORMATS = ("json", "text", "off")
GRANT_TYPES = ("authorization_code", "password", "refresh_token", "client_credentials")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
#: the algorithms a DPoP proof (RFC 9449) or a client assertion (RFC 7523) may be signed with:
#: asymmetric only, never ``none`` or an HMAC
PROOF_ALGORITHMS = ("ES256", "EdDSA", "PS256", "RS256")
#: ``[dpop] nonce_scope``: nonces every process accepts, or each process its own
NONCE_SCOPES = ("shared", "process")
#: ``[[routes]] dpop``: DPoP-bound and bearer tokens both pass, or DPoP-bound tokens only
DPOP_MODES = ("allowed", "required")
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
    the policy is gateway/throttle.py's and docs/login-throttling.md's.

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
    #: the protected resource's name, shown to people (RFC 9728 metadata, the consent page);
    #: routes that share a resource identifier (``audience``) share it
    resource_name: str | None = None
    #: a URL of the resource's documentation for developers (RFC 9728 metadata)
    resource_documentation: str | None = None
    #: an MCP server (Model Context Protocol, streamable HTTP): each POST's JSON-RPC body is
    #: read before it is forwarded, and a ``tools/call`` needs its tool's scopes as well
    mcp: bool = False
    #: bytes an ``mcp = true`` route reads of a POST body; past it, 413
    mcp_max_body: int = 1048576
    #: ``mcp = true``: tool-name globs to scope sets, the same shape as ``scopes``, first match
    #: in file order; a tool no pattern matches is refused unless a ``"*"`` pattern exists
    mcp_tool_scopes: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()
    #: DPoP (RFC 9449): ``"allowed"``, a DPoP-bound token with its proof or a bearer token;
    #: ``"required"``, a DPoP-bound token with its proof only
    dpop: str = "allowed"


#: ``[registration] dynamic``: no registration endpoint, anyone may register, or only with an
#: initial access token (``gateway registration token create``)
REGISTRATION_MODES = ("off", "open", "token")


@dataclass(frozen=True)
class RegistrationConfig:
    """Clients that register themselves: Client ID Metadata Documents and RFC 7591/7592."""

    #: a ``client_id`` that is an https:// URL with a path is a client whose metadata the
    #: gateway fetches from that URL (off by default: an operator opts in to such clients)
    metadata_documents: bool = False
    #: glob patterns of the hosts such clients may live on (empty: any public host)
    metadata_document_hosts: tuple[str, ...] = ()
    #: a PEM bundle to verify metadata documents' hosts with, instead of the system's CAs
    ca_file: str | None = None
    #: let metadata documents be fetched from loopback and private addresses (tests and labs)
    allow_private_addresses: bool = False
    #: RFC 7591 dynamic registration at /oauth/register: "off", "open" or "token"
    dynamic: str = "off"
    #: scopes a registered client may ask for (default: every scope the routes name)
    allowed_scopes: tuple[str, ...] | None = None
    #: registrations a client address may make in an hour
    max_per_address_per_hour: int = 20


@dataclass(frozen=True)
class DpopConfig:
    """DPoP proofs (RFC 9449), at the token endpoint and at the routes."""

    #: seconds a proof is accepted after its ``iat`` (``tokens.leeway`` added for clocks)
    proof_max_age: float = 60.0
    #: demand a server nonce (``DPoP-Nonce``) in every proof: stops replays across workers and
    #: replicas, at one extra round trip per client per ``nonce_lifetime``
    nonces: bool = False
    #: seconds one nonce is handed out; it is accepted for two such steps
    nonce_lifetime: float = 60.0
    #: ``"shared"``: every worker and replica makes and accepts the same nonces (a proof
    #: replayed to another process inside its window is accepted there); ``"process"``: each
    #: process accepts only its own, so a replay anywhere is refused, at one more round trip
    #: each time a client's requests move to another process
    nonce_scope: str = "shared"
    #: proofs (``jti``s) one process remembers to refuse their replay inside the window; past
    #: it, the oldest are forgotten first
    replay_cache_size: int = 1000000


@dataclass(frozen=True)
class ParConfig:
    """Pushed authorization requests (RFC 9126) at ``POST /oauth/par``."""

    #: every authorization request must be pushed first (per client: ``--require-par``)
    required: bool = False
    #: seconds a pushed request's ``request_uri`` stays redeemable (its ``expires_in``)
    request_lifetime: int = 60


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
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    dpop: DpopConfig = field(default_factory=DpopConfig)
    par: ParConfig = field(default_factory=ParConfig)
    routes: tuple[RouteConfig, ...] = ()
    #: folder that relative paths resolve against (the config file's folder)
    base_dir: str = "."

    @property
    def audience(self) -> str:
        return self.tokens.audience or self.issuer

    def resource_identifier(self, route: RouteConfig) -> str:
        """The protected resource ``route`` belongs to (RFC 8707 §2): its ``audience``, else
        the tokens' (``gateway.resources``)."""
        return route.audience or self.audience

    @property
    def keys_dir(self) -> Path:
        return resolve_path(self.base_dir, self.keys.dir)

    @property
    def database_url(self) -> str:
        return resolve_database_url(self.database.url, self.base_dir)


def resolve_path(base: str, path: str) -> Path:
    """``path`` as written in the config: relative ones against the config file's folder."""
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
