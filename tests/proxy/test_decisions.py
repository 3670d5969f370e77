"""``/decisions``: the proxy's decisions for an edge in front, and each edge's dialect.

The equivalence table runs every case of the proxy's own auth, path and route tests through
the proxy and through ``/decisions`` as nginx, Traefik, Caddy and Envoy ask, and requires the
same outcome: the same error and challenge (400 / 404 / 405 become 403 at ``/decisions``: an
edge knows only 401 and 403), the same identity headers and assertion. None of these servers
has a database: a decision never needs one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.keys import KeyRing
from tests.support.cases import (
    IDENTITY,
    INVALID_TOKENS,
    SCOPE_MATRIX,
    TRICKS,
    bare,
    insufficient,
    invalid,
)
from tests.support.proxy import AUDIENCE, Gateway, GatewayFactory, RawResponse, raw_request

ORDERS = '[[routes]]\npath = "/orders"\nupstream = "{echo}"\nscopes = ["orders:read"]\n'
PUBLIC_ALL = '[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n'
GET_ONLY = '[[routes]]\npath = "/orders"\nmethods = ["GET"]\npublic = true\nupstream = "{echo}"\n'
HOSTS = (
    '[[routes]]\nhost = "api.test"\npath = "/"\nupstream = "{echo}"\nscopes = ["orders:read"]\n'
    '[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n'
)
ASSERTING = "[proxy.assertion]\nenabled = true\n" + ORDERS
OVERRIDING = (
    '[[routes]]\npath = "/o"\nmethods = ["POST"]\nupstream = "{echo}"\nscopes = ["w"]\n'
    "allow_method_override = true\n"
    '[[routes]]\npath = "/o"\nmethods = ["DELETE"]\nupstream = "{echo}"\nscopes = ["d"]\n'
    "allow_method_override = true\n"
)


@dataclass(frozen=True)
class Context:
    mint: Callable[..., str]
    keyring: KeyRing
    revocations: RevocationCache
    tmp_path: Path


@dataclass(frozen=True)
class Request:
    """A client's request, as the client sent it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    host: str = "gw.test"

    def head(self, *extra: tuple[str, str]) -> str:
        return "".join(f"{name}: {value}\r\n" for name, value in (*self.headers, *extra))


Make = Callable[[Context], Request]


def bearer(token: Callable[[Context], str], target: str = "/orders", **kw: Any) -> Make:
    return lambda ctx: Request("GET", target, (("Authorization", f"Bearer {token(ctx)}"),), **kw)


def plain(method: str, target: str, *headers: tuple[str, str], host: str = "gw.test") -> Make:
    return lambda _: Request(method, target, headers, host)


def overriding(scope: str, *overrides: str) -> Make:
    """A POST to /o with a token for ``scope`` and an ``X-HTTP-Method-Override`` per value."""
    return lambda ctx: Request(
        "POST",
        "/o/1",
        (
            ("Authorization", f"Bearer {ctx.mint(scope)}"),
            *(("X-HTTP-Method-Override", value) for value in overrides),
        ),
    )


def minted(scope: str = "orders:read", **claims: Any) -> Callable[[Context], str]:
    return lambda ctx: ctx.mint(scope, **claims)


def revoked(ctx: Context) -> str:
    token = ctx.mint("orders:read", jti="revoked-jti")
    ctx.revocations.add(RevocationEntry("jti", "revoked-jti", time.time(), time.time() + 600))
    return token


def spoofed(ctx: Context) -> Request:
    forged = (
        ("X-Forwarded-User", "mallory"),
        ("x_forwarded_email", "mallory@evil.test"),
        ("X-GATEWAY_assertion", "forged"),
        ("X-Gateway-Assertion", "forged"),
        ("Authorization", f"Bearer {ctx.mint('orders:read', email='alice@example.test')}"),
    )
    return Request("GET", "/orders/7", forged)


CASES = [
    *(pytest.param(PUBLIC_ALL, plain("GET", p.values[0]), id=f"path-{p.id}") for p in TRICKS[:-1]),
    *(
        pytest.param(
            ORDERS, bearer(lambda ctx, m=p.values[0]: m(ctx.keyring, ctx.tmp_path)), id=p.id
        )
        for p in INVALID_TOKENS
    ),
    *(
        pytest.param(
            f'[[routes]]\npath = "/r"\nupstream = "{{echo}}"\n{p.values[0]}\n',
            bearer(minted(p.values[1]), "/r"),
            id=f"scope-{p.id}",
        )
        for p in SCOPE_MATRIX
    ),
    pytest.param(ORDERS, bearer(minted()), id="allowed"),
    pytest.param(ORDERS, bearer(minted(email="alice@example.test")), id="allowed-email"),
    pytest.param(ORDERS, bearer(minted(), "/orders/7?a=1&b=%2F"), id="allowed-query"),
    pytest.param(ORDERS, bearer(revoked), id="revoked"),
    pytest.param(ORDERS, bearer(minted(sub="alice\u2028")), id="claims-not-headers"),
    pytest.param(ORDERS, plain("GET", "/orders"), id="no-token"),
    pytest.param(ORDERS, plain("POST", "/orders"), id="no-token-post"),
    pytest.param(ORDERS, plain("GET", "/orders", ("Authorization", "Basic YTpi")), id="basic"),
    pytest.param(ORDERS, plain("GET", "/orders", ("Authorization", "Bearer ")), id="empty"),
    pytest.param(ORDERS, bearer(minted(), "/orders?access_token=x"), id="query-ignored"),
    pytest.param(
        ORDERS,
        lambda ctx: Request(
            "GET",
            "/orders",
            (("Authorization", f"Bearer {ctx.mint('orders:read')}"), ("Authorization", "Bearer x")),
        ),
        id="two-authorizations",
    ),
    pytest.param(
        ORDERS,
        lambda ctx: Request(
            "GET", "/orders", (("Authorization", f"bEaReR {ctx.mint('orders:read')}"),)
        ),
        id="scheme-case",
    ),
    pytest.param(ORDERS, plain("GET", "/nowhere"), id="no-route"),
    pytest.param(ORDERS, plain("GET", "/ordersx"), id="no-route-segment"),
    pytest.param(GET_ONLY, plain("POST", "/orders/1"), id="method-not-allowed"),
    pytest.param(GET_ONLY, plain("HEAD", "/orders/1"), id="head-on-get-route"),
    pytest.param(HOSTS, plain("GET", "/x", host="API.test"), id="host-route-needs-token"),
    pytest.param(HOSTS, bearer(minted(), "/x", host="api.test:8443"), id="host-route-port"),
    pytest.param(HOSTS, plain("GET", "/x", host="www.test"), id="host-less-public"),
    pytest.param(HOSTS, plain("GET", "/x", host="api.test."), id="host-trailing-dot"),
    pytest.param(HOSTS, plain("GET", "/x", host="API.TEST.:8443"), id="host-dot-case-port"),
    pytest.param(HOSTS, bearer(minted(), "/x", host="api.test.:80"), id="host-dot-allowed"),
    pytest.param(HOSTS, plain("GET", "/x", host="api.test.."), id="host-two-trailing-dots"),
    pytest.param(HOSTS, plain("GET", "/x", host="a@api.test"), id="host-userinfo"),
    pytest.param(HOSTS, plain("GET", "/x", host="api.test:"), id="host-empty-port"),
    pytest.param(HOSTS, plain("GET", "/x", host="api.test:99999"), id="host-bad-port"),
    pytest.param(HOSTS, plain("GET", "/x", host="[foo]"), id="host-bracketed-name"),
    pytest.param(HOSTS, plain("GET", "/x", host="api%2etest"), id="host-percent-encoded"),
    pytest.param(OVERRIDING, overriding("d", "DELETE"), id="override-honoured"),
    pytest.param(OVERRIDING, overriding("w", "DELETE"), id="override-scope-checked"),
    pytest.param(OVERRIDING, overriding("d", "delete", "DELETE"), id="override-one-method"),
    pytest.param(OVERRIDING, overriding("d", "DELETE", "PUT"), id="override-two-methods"),
    pytest.param(OVERRIDING, overriding("d", "DEL ETE"), id="override-not-a-method"),
    pytest.param(OVERRIDING, overriding("d", "PATCH"), id="override-no-route"),
    pytest.param(PUBLIC_ALL, bearer(lambda _: "garbage", "/x"), id="public-ignores-token"),
    pytest.param(
        '[[routes]]\npath = "/r"\naudience = "https://orders.test"\nupstream = "{echo}"\n',
        bearer(minted(aud=AUDIENCE), "/r"),
        id="route-audience",
    ),
    pytest.param(ORDERS, spoofed, id="spoofed-identity"),
    pytest.param(PUBLIC_ALL, spoofed, id="spoofed-identity-public"),
    pytest.param(ASSERTING, bearer(minted(email="alice@example.test")), id="assertion"),
    pytest.param(ASSERTING, spoofed, id="assertion-spoofed"),
    pytest.param(ASSERTING, plain("GET", "/orders"), id="assertion-no-token"),
]


@dataclass(frozen=True)
class Outcome:
    status: int
    error: str | None
    description: str | None
    challenge: tuple[str, ...]
    identity: tuple[tuple[str, str], ...]


def outcome(response: RawResponse, identity: list[tuple[str, str]]) -> Outcome:
    body = json.loads(response.body) if response.status >= 400 else {}
    return Outcome(
        response.status,
        body.get("error"),
        body.get("error_description"),
        tuple(response.header("www-authenticate")),
        tuple(
            sorted((n.lower(), v) for n, v in identity if n.lower().replace("_", "-") in IDENTITY)
        ),
    )


async def through_proxy(gw: Gateway, request: Request) -> Outcome:
    response = await raw_request(
        gw.port, request.target, request.head(), request.method, request.host
    )
    received = (
        json.loads(response.body)["headers"] if response.status == 200 and response.body else []
    )
    return outcome(response, [(n, v) for n, v in received])


def nginx(request: Request) -> tuple[str, str, str, str]:
    """``auth_request``: always a GET; the method and URI in X-Original-*, Host kept."""
    head = request.head(("X-Original-Method", request.method), ("X-Original-URI", request.target))
    return "GET", "/decisions", head, request.host


def traefik(request: Request) -> tuple[str, str, str, str]:
    """``ForwardAuth``: X-Forwarded-Method/-Host/-Uri/-Proto/-For; Host is the gateway's."""
    head = request.head(
        ("X-Forwarded-Method", request.method),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", request.host),
        ("X-Forwarded-Uri", request.target),
        ("X-Forwarded-For", "203.0.113.7"),
    )
    return "GET", "/decisions", head, "127.0.0.1:8000"


def caddy(request: Request) -> tuple[str, str, str, str]:
    """``forward_auth``: X-Forwarded-Method and -Uri, the client's Host passed on."""
    head = request.head(("X-Forwarded-Method", request.method), ("X-Forwarded-Uri", request.target))
    return "GET", "/decisions", head, request.host


def envoy(request: Request) -> tuple[str, str, str, str]:
    """``ext_authz`` with ``path_prefix = "/decisions"``: the request itself, prefixed."""
    return request.method, "/decisions" + request.target, request.head(), request.host


DIALECTS = {"nginx": nginx, "traefik": traefik, "caddy": caddy, "envoy": envoy}


async def through_decisions(gw: Gateway, dialect: str, request: Request) -> Outcome:
    method, target, head, host = DIALECTS[dialect](request)
    response = await raw_request(gw.port, target, head, method, host)
    assert response.status in (200, 401, 403), response
    assert response.header("cache-control") == ["no-store"]
    return outcome(response, response.headers)


@pytest.fixture
def context(
    mint: Callable[..., str], keyring: KeyRing, revocations: RevocationCache, tmp_path: Path
) -> Context:
    return Context(mint, keyring, revocations, tmp_path)


@pytest.mark.parametrize(("routes", "make"), CASES)
async def test_proxy_and_decisions_decide_alike(
    gateway: GatewayFactory, echo: str, context: Context, routes: str, make: Make
) -> None:
    gw = await gateway(routes.format(echo=echo))
    request = make(context)
    proxied = await through_proxy(gw, request)
    expected = Outcome(
        proxied.status if proxied.status in (200, 401) else 403,
        proxied.error,
        proxied.description,
        proxied.challenge,
        proxied.identity,
    )
    for dialect in DIALECTS:
        assert await through_decisions(gw, dialect, request) == expected, dialect


# --- the endpoint's own rules ----------------------------------------------------------------


async def ask(gw: Gateway, head: str, target: str = "/decisions", **kw: Any) -> RawResponse:
    return await raw_request(gw.port, target, head, **kw)


def error(response: RawResponse) -> tuple[int, str]:
    return response.status, json.loads(response.body)["error_description"]


async def test_untrusted_peers_are_refused_whatever_they_send(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str]
) -> None:
    gw = await gateway(
        '[decisions]\ntrusted_peers = ["10.0.0.0/8", "::1"]\n' + ORDERS.format(echo=echo)
    )
    token = mint("orders:read")
    for head in (
        f"Authorization: Bearer {token}\r\nX-Original-Method: GET\r\nX-Original-URI: /orders\r\n",
        f"Authorization: Bearer {token}\r\n",
    ):
        response = await ask(gw, head, "/decisions/orders")
        assert response.status == 403
        assert json.loads(response.body) == {
            "error": "access_denied",
            "error_description": "decisions are answered for the trusted edges only",
        }
    # the proxy itself still serves everyone
    proxied = await raw_request(gw.port, "/orders", f"Authorization: Bearer {token}\r\n")
    assert proxied.status == 200


DISAGREEMENTS = [
    pytest.param(
        "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /public\r\n"
        "X-Original-Method: GET\r\nX-Original-URI: /orders\r\n",
        "X-Forwarded-* and X-Original-* describe different requests",
        id="uris-differ",
    ),
    pytest.param(
        "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /orders\r\n"
        "X-Original-Method: POST\r\nX-Original-URI: /orders\r\n",
        "X-Forwarded-* and X-Original-* describe different requests",
        id="methods-differ",
    ),
    pytest.param(
        "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /orders\r\nX-Forwarded-Host: other.test\r\n"
        "X-Original-Method: GET\r\nX-Original-URI: /orders\r\n",
        "X-Forwarded-* and X-Original-* describe different requests",
        id="hosts-differ",
    ),
    pytest.param(
        "X-Forwarded-Uri: /public\r\nX-Original-Method: GET\r\nX-Original-URI: /orders\r\n",
        "X-Forwarded-* and X-Original-* describe different requests",
        id="forged-uri-only",
    ),
    pytest.param(
        "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /orders\r\nX-Forwarded-Uri: /public\r\n",
        "more than one x-forwarded-uri header",
        id="repeated-uri",
    ),
    pytest.param(
        "X-Original-URI: /orders\r\n",
        "X-Original-Method and X-Original-URI are both required",
        id="nginx-without-method",
    ),
    pytest.param(
        "X-Forwarded-Method: GET\r\n",
        "X-Forwarded-Method and X-Forwarded-Uri are both required",
        id="method-without-uri",
    ),
    pytest.param(
        "X-Forwarded-Method: G(T\r\nX-Forwarded-Uri: /orders\r\n",
        "the forwarded method is not an HTTP method",
        id="bad-method",
    ),
]


@pytest.mark.parametrize(("head", "description"), DISAGREEMENTS)
async def test_ambiguous_descriptions_are_refused(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], head: str, description: str
) -> None:
    gw = await gateway(ORDERS.format(echo=echo) + PUBLIC_ALL.format(echo=echo))
    response = await ask(gw, f"Authorization: Bearer {mint('orders:read')}\r\n{head}")
    assert error(response) == (403, description)
    assert json.loads(response.body)["error"] == "invalid_request"


async def test_agreeing_descriptions_are_one_request(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str]
) -> None:
    gw = await gateway(ORDERS.format(echo=echo))
    head = (
        f"Authorization: Bearer {mint('orders:read')}\r\nX-Forwarded-Method: GET\r\n"
        "X-Forwarded-Uri: /orders/1\r\nX-Original-Method: GET\r\nX-Original-URI: /orders/1\r\n"
    )
    assert (await ask(gw, head)).status == 200


async def test_traefik_host_comes_from_x_forwarded_host(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str]
) -> None:
    gw = await gateway(HOSTS.format(echo=echo))
    head = "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /x\r\nX-Forwarded-Host: api.test\r\n"
    response = await ask(gw, head, host="gateway.internal:8000")
    assert response.status == 401
    assert response.header("www-authenticate") == [bare("orders:read")]
    public = await ask(gw, head.replace("api.test", "www.test"), host="gateway.internal:8000")
    assert public.status == 200


@pytest.mark.parametrize(
    ("head", "host", "status"),
    [
        pytest.param("", "api.test.", 401, id="host-trailing-dot"),
        pytest.param("", "API.Test:8443", 401, id="host-case-port"),
        pytest.param("", "api.test..", 403, id="host-two-trailing-dots"),
        pytest.param("", "www.test.", 200, id="host-other"),
        pytest.param("X-Forwarded-Host: api.test.\r\n", "gw.internal", 401, id="xfh-trailing-dot"),
        pytest.param("X-Forwarded-Host: API.TEST.:443\r\n", "gw.internal", 401, id="xfh-dot-port"),
        pytest.param("X-Forwarded-Host: api.test..\r\n", "gw.internal", 403, id="xfh-two-dots"),
        pytest.param("X-Forwarded-Host: a@api.test\r\n", "api.test", 403, id="xfh-userinfo"),
        pytest.param("X-Forwarded-Host: www.test\r\n", "api.test.", 200, id="xfh-decides"),
    ],
)
async def test_the_host_is_normalised_from_each_source(
    gateway: GatewayFactory, echo: str, head: str, host: str, status: int
) -> None:
    """Issue 15 §1 at /decisions: ``Host`` (nginx, Caddy, Envoy) and ``X-Forwarded-Host``
    (Traefik, Caddy) are read as the proxy reads ``Host``."""
    gw = await gateway(HOSTS.format(echo=echo))
    head += "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /x\r\n"
    assert (await ask(gw, head, host=host)).status == status


@pytest.mark.parametrize(
    ("routes", "token", "removed"),
    [
        pytest.param(
            PUBLIC_ALL,
            None,
            "x-forwarded-user,x-forwarded-email,x-forwarded-client-id,x-forwarded-scopes,"
            "x-gateway-assertion",
            id="public",
        ),
        pytest.param(ORDERS, {}, "x-forwarded-email,x-gateway-assertion", id="client"),
        pytest.param(ORDERS, {"email": "a@example.test"}, "x-gateway-assertion", id="user"),
        pytest.param(ASSERTING, {"email": "a@example.test"}, None, id="user-asserted"),
        pytest.param(
            '[proxy.identity_headers]\nuser = "Remote-User"\n[proxy.assertion]\n'
            'header = "X-Identity"\n' + ORDERS,
            {},
            "x-forwarded-email,x-identity",
            id="renamed",
        ),
    ],
)
async def test_envoy_is_told_which_headers_to_remove(
    gateway: GatewayFactory,
    echo: str,
    mint: Callable[..., str],
    routes: str,
    token: dict[str, str] | None,
    removed: str | None,
) -> None:
    gw = await gateway(routes.format(echo=echo))
    head = "" if token is None else f"Authorization: Bearer {mint('orders:read', **token)}\r\n"
    response = await ask(gw, head, "/decisions/orders/1?x=1", method="PATCH")
    assert response.status == 200
    assert response.header("x-envoy-auth-headers-to-remove") == ([removed] if removed else [])
    assert response.body == b""


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/decisions", id="bare-prefix"),
        pytest.param("/decision%73/orders", id="encoded-prefix"),
        pytest.param("/decisions%2Forders", id="encoded-slash"),
        pytest.param("/decisions/orders/../admin", id="dot-dot"),
    ],
)
async def test_envoy_paths_that_are_not_below_the_prefix(
    gateway: GatewayFactory, echo: str, target: str
) -> None:
    gw = await gateway(PUBLIC_ALL.format(echo=echo))
    response = await ask(gw, "", target)
    assert response.status == 403
    assert json.loads(response.body)["error"] == "invalid_request"


async def test_an_insufficient_scope_names_the_scope_for_the_edge(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str]
) -> None:
    gw = await gateway(ORDERS.format(echo=echo))
    head = f"Authorization: Bearer {mint('other')}\r\n"
    head += "X-Original-Method: GET\r\nX-Original-URI: /orders\r\n"
    response = await ask(gw, head)
    assert response.status == 403
    assert response.header("www-authenticate") == [insufficient("orders:read")]
    assert json.loads(response.body)["scope"] == "orders:read"


async def test_a_head_request_gets_the_status_without_a_body(
    gateway: GatewayFactory, echo: str
) -> None:
    gw = await gateway(ORDERS.format(echo=echo))
    response = await ask(gw, "", "/decisions/orders", method="HEAD")
    assert response.status == 401
    assert response.body == b""


MCP = "https://api.example.test/mcp"
MCP_METADATA = "https://api.example.test/.well-known/oauth-protected-resource/mcp"
MCP_ROUTE = (
    '[[routes]]\npath = "/mcp"\nupstream = "{echo}"\n'
    f'audience = "{MCP}"\nscopes = [["mcp:use", "extra"], ["alt"]]\n'
)


@pytest.mark.parametrize(
    ("target", "description", "status", "challenge"),
    [
        pytest.param(
            "/decisions",
            "X-Original-Method: GET\r\nX-Original-URI: /mcp\r\n",
            401,
            bare("mcp:use extra", MCP_METADATA),
            id="nginx-no-token",
        ),
        pytest.param(
            "/decisions",
            "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /mcp\r\n"
            "X-Forwarded-Host: evil.example\r\nAuthorization: Bearer x.y.z\r\n",
            401,
            invalid("malformed token", "mcp:use extra", MCP_METADATA),
            id="traefik-invalid-token",
        ),
        pytest.param(
            "/decisions",
            "X-Original-Method: GET\r\nX-Original-URI: /mcp\r\nAuthorization: Bearer {other}\r\n",
            401,
            invalid("wrong audience", "mcp:use extra", MCP_METADATA),
            id="wrong-audience",
        ),
        pytest.param(
            "/decisions",
            "X-Original-Method: GET\r\nX-Original-URI: /mcp\r\nAuthorization: Bearer {weak}\r\n",
            403,
            insufficient("mcp:use extra", MCP_METADATA),
            id="insufficient-scope",
        ),
        pytest.param(
            "/decisions/mcp",
            "",
            401,
            bare("mcp:use extra", MCP_METADATA),
            id="envoy-no-token",
        ),
        pytest.param(
            "/decisions/mcp",
            "Authorization: Bearer {weak}\r\n",
            403,
            insufficient("mcp:use extra", MCP_METADATA),
            id="envoy-insufficient-scope",
        ),
    ],
)
async def test_denials_name_the_resources_metadata(
    gateway: GatewayFactory,
    echo: str,
    mint: Callable[..., str],
    target: str,
    description: str,
    status: int,
    challenge: str,
) -> None:
    """RFC 9728 §5.1 at the edge's door too: the URL comes from the resource identifier,
    whatever Host the edge (or the client through it) names."""
    gw = await gateway(MCP_ROUTE.format(echo=echo))
    head = description.format(other=mint("mcp:use extra"), weak=mint("mcp:use", aud=MCP))
    response = await ask(gw, head, target, host="evil.example:8443")
    assert response.status == status
    assert response.header("www-authenticate") == [challenge]


MCP_TOOLS_ROUTE = (
    '[[routes]]\npath = "/mcp"\nupstream = "{echo}"\nscopes = ["mcp:use"]\nmcp = true\n'
    'mcp_tool_scopes = {{ "*" = [] }}\n'
)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_message_to_an_mcp_route_is_refused_as_it_cannot_be_read(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], method: str
) -> None:
    """The edge sends no body, and would forward the message unchecked: 403 whatever the
    token, so that an edge set up for such a route fails at once, not after a sign-in."""
    gw = await gateway(MCP_TOOLS_ROUTE.format(echo=echo))
    described = f"X-Original-Method: {method}\r\nX-Original-URI: /mcp\r\n"
    for token in (f"Authorization: Bearer {mint('mcp:use')}\r\n", ""):
        response = await ask(gw, described + token)
        assert error(response) == (
            403,
            "this route is an MCP server (mcp = true): its messages are checked by the "
            "gateway's proxy, which reads them; /decisions cannot see a request's body",
        )
        assert json.loads(response.body)["error"] == "access_denied"
    envoy = await ask(gw, "Content-Length: 0\r\n", "/decisions/mcp", method=method)
    assert envoy.status == 403 and error(envoy)[1].startswith("this route is an MCP server")


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
async def test_an_mcp_routes_stream_and_session_end_are_decided_as_usual(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], method: str
) -> None:
    gw = await gateway(MCP_TOOLS_ROUTE.format(echo=echo))
    described = f"X-Original-Method: {method}\r\nX-Original-URI: /mcp\r\n"
    allowed = await ask(gw, described + f"Authorization: Bearer {mint('mcp:use')}\r\n")
    assert allowed.status == 200
    assert (await ask(gw, described)).status == 401
