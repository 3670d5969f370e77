"""``gateway edge-config``: configuration for the edge in front, asking ``/decisions``.

Each snippet points the edge's external-authorization hook at this gateway and copies the
identity headers (and the assertion's) from the gateway's answer onto the request it
forwards, replacing any copy the client sent. It also sets, itself, every header the gateway
reads to learn which request it decides on: an edge passes the client's own headers into its
auth request, and a client's ``X-Forwarded-Uri`` must never describe the request
(GHSA-7x63-xv5r-3p2x). The host the gateway decides on is the one the edge routes by, as the
client sent it (the gateway normalises it: ``gateway.hosts``); method override headers reach the
gateway, which refuses a request whose route does not honour them, or are removed where an edge
would pass on a spelling with ``_`` (``gateway.proxy.overrides``). A refusal reaches the client
with its ``WWW-Authenticate`` (RFC 9728 ``resource_metadata`` included, a 403's too), and the
protected resources' metadata (``/.well-known/oauth-protected-resource`` and below) is passed to
the gateway, undecided, with the client's host, so that a client refused at the edge can find
it. DPoP (RFC 9449): the ``DPoP`` header reaches the gateway, with the scheme the client used
(``X-Forwarded-Proto``, the edge's own) beside the host and original URI the proof's ``htu``
is rebuilt from, and a refusal's ``DPoP-Nonce`` reaches the client. The tests run the nginx
and Caddy snippets in front of a real gateway and parse the Traefik
and Envoy ones.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.config import DECISIONS_PREFIX, Config
from gateway.errors import ConfigError
from gateway.proxy.overrides import OVERRIDE_NAMES
from gateway.resources import METADATA_PREFIX

EDGES = ("nginx", "caddy", "traefik", "envoy")
DEFAULT_UPSTREAM = "http://127.0.0.1:9001"
DEFAULT_LISTEN = 8080
_TYPES = "type.googleapis.com/envoy.extensions.filters"
_HCM = f"{_TYPES}.network.http_connection_manager.v3.HttpConnectionManager"
_EXT_AUTHZ = f"{_TYPES}.http.ext_authz.v3.ExtAuthz"
_ROUTER = f"{_TYPES}.http.router.v3.Router"


@dataclass(frozen=True)
class _Edge:
    #: where the gateway listens: host (no brackets), port, and both as an authority
    host: str
    port: int
    authority: str
    upstream: str
    #: the identity headers and the assertion's, as configured
    names: tuple[str, ...]
    listen: int


def edge_config(
    edge: str, config: Config, upstream: str | None, listen: int, gateway: str | None = None
) -> str:
    """The snippet for ``edge`` (one of ``EDGES``) in front of the gateway ``config`` serves,
    reached at ``gateway`` (``http://host:port``; default: ``[server]`` host and port)."""
    host, port = config.server.host, config.server.port
    if gateway is not None:
        url = urlsplit(gateway)
        if url.scheme != "http" or not url.hostname or url.path not in ("", "/"):
            raise ConfigError(f"--gateway: {gateway!r} is not an http://host:port URL")
        host, port = url.hostname, url.port or 80
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if upstream is None:
        upstream = config.routes[0].upstream if config.routes else DEFAULT_UPSTREAM
    render: Callable[[_Edge], str] = _RENDER[edge]
    return render(
        _Edge(
            host=host,
            port=port,
            authority=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            upstream=upstream.rstrip("/"),
            names=(*config.proxy.identity_headers.names(), config.proxy.assertion.header),
            listen=listen,
        )
    )


def _variable(name: str) -> str:
    return "$gateway_" + name.lower().replace("-", "_")


def _nginx(edge: _Edge) -> str:
    auth = "/.gateway/decisions"
    sets = "".join(
        f"        auth_request_set {_variable(n)} $upstream_http_{n.lower().replace('-', '_')};\n"
        for n in edge.names
    )
    copies = "".join(f"        proxy_set_header {n} {_variable(n)};\n" for n in edge.names)
    return f"""\
# nginx (ngx_http_auth_request_module): a server block for the http {{ }} context.
# Every request is decided by the gateway before it is passed to the upstream.
upstream gateway_decisions {{
    server {edge.authority};
    keepalive 32;  # no new connection to the gateway per decision
}}

server {{
    listen {edge.listen};
    # an HTTP/1.0 request may come without Host; nginx would then ask the gateway with no
    # Host at all, which HTTP/1.1 forbids (RFC 9112 §3.2): refused here instead
    if ($host = "") {{
        return 400;
    }}

    location / {{
        auth_request {auth};
{sets}        auth_request_set $gateway_www_authenticate $upstream_http_www_authenticate;
        # RFC 9449 §8: the gateway's next DPoP nonce, to the client (nothing when none)
        auth_request_set $gateway_dpop_nonce $upstream_http_dpop_nonce;
        add_header DPoP-Nonce $gateway_dpop_nonce always;
        # the gateway's identity headers, never a client's copy (an empty value removes the
        # header; nginx drops client headers with "_" in their names by default)
{copies}        # nginx passes WWW-Authenticate on for a 401 only: copy it for a 403 too
        error_page 403 = @gateway_forbidden;
        proxy_pass {edge.upstream};
    }}

    # RFC 9728 protected resource metadata: the gateway's own documents, for anyone
    location = {METADATA_PREFIX} {{
        proxy_pass http://gateway_decisions;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
    }}
    location ^~ {METADATA_PREFIX}/ {{
        proxy_pass http://gateway_decisions;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
    }}

    location = {auth} {{
        internal;
        proxy_pass http://gateway_decisions{DECISIONS_PREFIX};
        proxy_http_version 1.1;
        proxy_pass_request_body off;
        proxy_set_header Connection "";
        proxy_set_header Content-Length "";
        # the request to decide on, as nginx received it (the subrequest itself is a GET)
        proxy_set_header Host $host;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Original-URI $request_uri;
        # the scheme the client used, for a DPoP proof's URL (the DPoP header goes as sent)
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Port $server_port;
        # a client's own copies of the other description never reach the gateway
        proxy_set_header X-Forwarded-Method "";
        proxy_set_header X-Forwarded-Host "";
        proxy_set_header X-Forwarded-Uri "";
    }}

    location @gateway_forbidden {{
        add_header WWW-Authenticate $gateway_www_authenticate always;
        add_header Cache-Control no-store always;
        return 403;
    }}
}}
"""


def _spellings(name: str) -> list[str]:
    """``name`` with each of its ``-`` as ``-`` or ``_``: ``X-A`` -> ``X-A``, ``X_A``."""
    parts = name.split("-")
    return [
        parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:], strict=True))
        for seps in itertools.product("-_", repeat=len(parts) - 1)
    ]


def _caddy(edge: _Edge) -> str:
    # every spelling with "_" for "-": Go servers pass such names on as they are
    removed = "".join(
        f"\t\trequest_header -{variant}\n" for n in edge.names for variant in _spellings(n)
    )
    # the gateway decides on method overrides spelled with "-" only (an upstream may read "_")
    removed += "".join(
        f"\t\trequest_header -{variant}\n" for n in OVERRIDE_NAMES for variant in _spellings(n)[1:]
    )
    # Caddy before 2.9 copies a header the answer lacks as its placeholder's literal text
    # (caddyserver/caddy#6610): removed when it is that text
    unset = "".join(
        f"\t\t@unset_{i} header_regexp {n} ^\\{{http\\.reverse_proxy\\.header\\.\n"
        f"\t\trequest_header @unset_{i} -{n}\n"
        for i, n in enumerate(edge.names)
    )
    return f"""\
# Caddy (forward_auth): a site block for the Caddyfile.
# Every request is decided by the gateway before it is passed to the upstream.
:{edge.listen} {{
\troute {{
\t\t# RFC 9728 protected resource metadata: the gateway's own documents, for anyone
\t\t@gateway_metadata path {METADATA_PREFIX} {METADATA_PREFIX}/*
\t\treverse_proxy @gateway_metadata {edge.authority}
\t\t# a client's copies of the identity headers never reach the upstream: removed first,
\t\t# then copy_headers sets the gateway's; so are method overrides spelled with "_"
{removed}\t\tforward_auth {edge.authority} {{
\t\t\turi {DECISIONS_PREFIX}
\t\t\t# forward_auth sets X-Forwarded-Method and X-Forwarded-Uri itself; the rest of the
\t\t\t# request's description is Caddy's too, never a client's: the Host as the client sent
\t\t\t# it, port included, for the gateway to check whole
\t\t\theader_up X-Forwarded-Host {{hostport}}
\t\t\theader_up X-Forwarded-Proto {{scheme}}
\t\t\theader_up -X-Forwarded-Port
\t\t\theader_up -X-Original-Method
\t\t\theader_up -X-Original-Uri
\t\t\tcopy_headers {" ".join(edge.names)}
\t\t}}
{unset}\t\treverse_proxy {edge.upstream}
\t}}
}}
"""


def _traefik(edge: _Edge) -> str:
    headers = "".join(f"          - {json.dumps(n)}\n" for n in edge.names)
    underscored = "".join(
        f'          {json.dumps(v)}: ""\n'
        for n in (*edge.names, *OVERRIDE_NAMES)
        for v in _spellings(n)[1:]
    )
    overrides = "".join(f"          - {json.dumps(n)}\n" for n in OVERRIDE_NAMES)
    return f"""\
# Traefik (ForwardAuth middleware): a file-provider dynamic configuration (YAML), for an
# entry point named "web" listening on :{edge.listen}.
http:
  middlewares:
    # Go passes header names with "_" on as they are; some upstreams read them as "-"
    gateway-strip:
      headers:
        customRequestHeaders:
{underscored}    gateway:
      forwardAuth:
        address: "http://{edge.authority}{DECISIONS_PREFIX}"
        # Traefik sets X-Forwarded-Method/-Host/-Uri itself; a client's are replaced
        trustForwardHeader: false
        # only the token, its DPoP proof and the method overrides go along (Traefik sets
        # X-Forwarded-Proto itself): no client header can describe another request, and the
        # gateway refuses an override a route does not honour
        authRequestHeaders:
          - "Authorization"
          - "DPoP"
{overrides}        # copied onto the forwarded request; a client's copies are removed
        authResponseHeaders:
{headers}  routers:
    api:
      entryPoints: ["web"]
      rule: "PathPrefix(`/`)"
      middlewares: ["gateway-strip", "gateway"]
      service: api
    # RFC 9728 protected resource metadata: the gateway's own documents, for anyone
    gateway-metadata:
      entryPoints: ["web"]
      rule: "Path(`{METADATA_PREFIX}`) || PathPrefix(`{METADATA_PREFIX}/`)"
      priority: 1000
      service: gateway
  services:
    api:
      loadBalancer:
        servers:
          - url: {json.dumps(edge.upstream)}
    gateway:
      loadBalancer:
        passHostHeader: true
        servers:
          - url: "http://{edge.authority}"
"""


def _envoy(edge: _Edge) -> str:
    up = urlsplit(edge.upstream)
    up_port = up.port or (443 if up.scheme == "https" else 80)
    patterns = "".join(
        f"{' ' * 20}- {{exact: {json.dumps(n.lower())}, ignore_case: true}}\n" for n in edge.names
    )
    overrides = "".join(
        f"{' ' * 16}- {{exact: {json.dumps(n.lower())}, ignore_case: true}}\n"
        for n in OVERRIDE_NAMES
    )
    undecided = "".join(
        f"""\
              - match: {{{match}}}
                route: {{cluster: gateway}}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": {_EXT_AUTHZ}PerRoute
                    disabled: true
"""
        for match in (f'path: "{METADATA_PREFIX}"', f'prefix: "{METADATA_PREFIX}/"')
    )
    return f"""\
# Envoy (ext_authz, HTTP service): a static bootstrap. The gateway answers the original
# method and path below path_prefix; its x-envoy-auth-headers-to-remove strips a client's
# copies of the identity headers the decision does not set.
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 0.0.0.0, port_value: {edge.listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {_HCM}
          stat_prefix: edge
          # a client's x_forwarded_user must not reach an upstream that reads it as "-"
          common_http_protocol_options: {{headers_with_underscores_action: DROP_HEADER}}
          # the edge: x-forwarded-proto (a DPoP proof's scheme) and -for are Envoy's own
          use_remote_address: true
          # admin.example. is admin.example: routes and the gateway see one host
          strip_trailing_host_dot: true
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              # RFC 9728 protected resource metadata: the gateway's own documents, for anyone
{undecided}              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": {_EXT_AUTHZ}
              transport_api_version: V3
              # only the token, its DPoP proof, the scheme and the method overrides go along
              # (Host, method and path always do): no client header can describe another
              # request, and the gateway refuses an override a route does not honour
              allowed_headers:
                patterns:
                - {{exact: authorization, ignore_case: true}}
                - {{exact: dpop, ignore_case: true}}
                - {{exact: x-forwarded-proto, ignore_case: true}}
{overrides}              http_service:
                server_uri:
                  uri: http://{edge.authority}
                  cluster: gateway
                  timeout: 1s
                path_prefix: {DECISIONS_PREFIX}
                authorization_response:
                  allowed_upstream_headers:
                    patterns:
{patterns}                  allowed_client_headers:
                    patterns:
                    - {{exact: www-authenticate, ignore_case: true}}
                    - {{exact: content-type, ignore_case: true}}
                    - {{exact: cache-control, ignore_case: true}}
                    - {{exact: dpop-nonce, ignore_case: true}}
                  allowed_client_headers_on_success:
                    patterns:
                    - {{exact: dpop-nonce, ignore_case: true}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": {_ROUTER}
  clusters:
  - name: gateway
    type: STRICT_DNS
    load_assignment:
      cluster_name: gateway
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: {edge.host}, port_value: {edge.port}}}}}
  - name: upstream
    type: STRICT_DNS
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: {up.hostname}, port_value: {up_port}}}}}
"""


_RENDER = {"nginx": _nginx, "caddy": _caddy, "traefik": _traefik, "envoy": _envoy}
