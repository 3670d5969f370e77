"""What a ``make bench`` run measures: the cases (by group, as ``--only`` names them), and the
plan of a run (rounds, seconds, cores)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from benchmarks import streaming
from benchmarks.load import Cores

PG_ADMIN_URL = os.environ.get(
    "GATEWAY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
#: wrk connections for the proxy cases (``--connections``)
PROXY_CONNECTIONS = 32
TOKEN_CONNECTIONS = 16

#: case name -> title; the groups ``--only`` also accepts
PROXY = {
    "reference": "reference: uvicorn + aiohttp passthrough, no auth",
    "public-1w": "gateway public route, 1 worker",
    "scoped-1w": "gateway scoped route (RS256 + identity headers), 1 worker",
    "scoped-dpop-1w": "gateway DPoP route (RS256 token, ES256 proof, identity headers), 1 worker",
    "scoped-post-1w": "gateway scoped route, POST of an MCP tools/call, 1 worker",
    "mcp-1w": "gateway mcp = true route, the same tools/call read and decided, 1 worker",
    "public-1w-nolog": "gateway public route, 1 worker, access log off",
    "scoped-1w-nolog": "gateway scoped route, 1 worker, access log off",
    "public-2w": "gateway public route, 2 workers",
    "scoped-2w": "gateway scoped route, 2 workers",
}
#: the decision endpoint, and nginx in front of it, against the own proxy's scoped-1w
EDGE = {
    "decisions-1w": "GET /decisions as nginx's auth_request asks (RS256 + identity headers)",
    "nginx-edge-1w": "nginx auth_request + /decisions, then nginx to the upstream, 1 worker",
}
#: the listener's cost: the scoped route on uvicorn's stock protocol, against scoped-1w
LISTENER = {
    "scoped-1w-stock": "gateway scoped route, 1 worker, uvicorn's stock httptools protocol",
    "listener-micro": "listener per request, gateway's protocol against stock (micro-benchmark)",
}
TOKENS = {
    "client-credentials-sqlite": "POST /oauth/token client_credentials, SQLite",
    "refresh-token-sqlite": "POST /oauth/token refresh_token (rotating), SQLite",
    "client-credentials-postgres": "POST /oauth/token client_credentials, PostgreSQL",
    "refresh-token-postgres": "POST /oauth/token refresh_token (rotating), PostgreSQL",
}
INTROSPECT = {
    "introspect-sqlite": "POST /oauth/introspect, SQLite",
    "introspect-postgres": "POST /oauth/introspect, PostgreSQL",
}
STREAMING = {name: name for name in streaming.CASES}
REVOCATIONS = {"revocations-1m": "revocation sets, 1,000,000 jtis"}
ACCESS_LOG = {"access-log": "access log per request (micro-benchmark)"}
GROUPS = {
    "proxy": PROXY,
    "accesslog": ACCESS_LOG,
    "edge": EDGE,
    "listener": LISTENER,
    "tokens": TOKENS,
    "introspect": INTROSPECT,
    "streaming": STREAMING,
    "revocations": REVOCATIONS,
}
ALL = {name: title for group in GROUPS.values() for name, title in group.items()}


@dataclass
class Plan:
    rounds: int
    seconds: float
    stream_bytes: int
    revoked_jtis: int
    selected: list[str]
    proxy_connections: int = PROXY_CONNECTIONS
    cores: Cores = field(default_factory=Cores.plan)

    @property
    def wrk_threads(self) -> int:
        return max(1, min(4, len(self.cores.load)))

    def wants(self, *names: str) -> bool:
        return any(name in self.selected for name in names)
