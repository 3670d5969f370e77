"""The route table: precedence, hosts compared normalised, ambiguity refused at start, 404 and
405 with Allow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.config import Config
from gateway.errors import ConfigError, MethodNotAllowed, RouteNotFound
from gateway.hosts import parse_host
from gateway.proxy import routes
from gateway.proxy.routes import RouteTable
from tests.support.proxy import GatewayFactory, raw_request

UP = "http://127.0.0.1:9"

TABLE = f"""
[[routes]]
name = "api-host"
host = "API.example.test."
path = "/"
upstream = "{UP}"

[[routes]]
name = "v6-host"
host = "[0::1]"
path = "/"
upstream = "{UP}"

[[routes]]
name = "orders"
path = "/orders"
upstream = "{UP}"

[[routes]]
name = "orders-special"
path = "/orders/special"
upstream = "{UP}"

[[routes]]
name = "reports-read"
path = "/reports"
methods = ["get"]
upstream = "{UP}"

[[routes]]
name = "reports-any"
path = "/reports"
upstream = "{UP}"

[[routes]]
name = "admin-read"
path = "/admin"
methods = ["GET"]
upstream = "{UP}"

[[routes]]
name = "admin-write"
path = "/admin"
methods = ["POST", "DELETE"]
upstream = "{UP}"

[[routes]]
name = "root"
path = "/"
public = true
upstream = "{UP}"
"""


@pytest.fixture
def table(write_config: Callable[[str], Config]) -> RouteTable:
    return RouteTable.from_config(write_config(TABLE).routes)


#: (the request's Host as sent, path, method, the route)
MATCHES = [
    pytest.param("api.example.test", "/orders/1", "GET", "api-host", id="host-before-path"),
    pytest.param("API.example.test:8443", "/x", "GET", "api-host", id="host-with-port"),
    pytest.param("api.example.test.", "/orders/1", "GET", "api-host", id="host-trailing-dot"),
    pytest.param("Api.Example.Test.:8443", "/x", "GET", "api-host", id="host-dot-case-port"),
    pytest.param("[::1]:8000", "/orders", "GET", "v6-host", id="ipv6-host"),
    pytest.param("[0:0::1]", "/orders", "GET", "v6-host", id="ipv6-host-spelled-long"),
    pytest.param("api.example.test.x", "/orders/1", "GET", "orders", id="host-is-whole-name"),
    pytest.param("other.test", "/orders/1", "GET", "orders", id="hostless-for-other-hosts"),
    pytest.param(None, "/orders", "GET", "orders", id="exact-path"),
    pytest.param(None, "/orders/", "GET", "orders", id="trailing-slash"),
    pytest.param(None, "/orders/special/9", "PUT", "orders-special", id="longer-path"),
    pytest.param(None, "/orders/specialx", "GET", "orders", id="segment-boundary"),
    pytest.param(None, "/ordersx", "GET", "root", id="not-a-prefix-match"),
    pytest.param(None, "/reports/1", "GET", "reports-read", id="method-specific-first"),
    pytest.param(None, "/reports/1", "HEAD", "reports-read", id="head-with-get"),
    pytest.param(None, "/reports/1", "POST", "reports-any", id="then-any-method"),
    pytest.param(None, "/admin/users", "DELETE", "admin-write", id="method-split"),
    pytest.param(None, "/", "GET", "root", id="root"),
    pytest.param("api.example.test", "/", "GET", "api-host", id="host-root"),
]


def matched(table: RouteTable, host: str | None, path: str, method: str) -> str:
    """The route's name for a request with ``Host: host``, as the decision core matches it."""
    return table.match(host and parse_host(host).name, path, method).name


@pytest.mark.parametrize(("host", "path", "method", "expected"), MATCHES)
def test_most_specific_route_wins(
    table: RouteTable, host: str | None, path: str, method: str, expected: str
) -> None:
    assert matched(table, host, path, method) == expected


@pytest.mark.parametrize("scan_limit", [0, routes.SCAN_LIMIT], ids=["dict-probes", "scan"])
def test_small_and_large_tables_match_alike(
    write_config: Callable[[str], Config], monkeypatch: pytest.MonkeyPatch, scan_limit: int
) -> None:
    """A small table is scanned longest path first, a large one probed segment by segment."""
    monkeypatch.setattr(routes, "SCAN_LIMIT", scan_limit)
    table = RouteTable.from_config(write_config(TABLE).routes)
    for case in MATCHES:
        host, path, method, expected = case.values
        assert matched(table, host, path, method) == expected, case.id


def test_method_mismatch_is_405_not_a_fall_through(table: RouteTable) -> None:
    # "/" would accept PUT, but "/admin" is more specific and decides alone
    with pytest.raises(MethodNotAllowed) as caught:
        table.match(None, "/admin/users", "PUT")
    assert caught.value.headers() == {"Allow": "DELETE, GET, HEAD, POST"}


def test_no_route_is_404(write_config: Callable[[str], Config]) -> None:
    table = RouteTable.from_config(
        write_config(f'[[routes]]\npath = "/orders"\nupstream = "{UP}"\n').routes
    )
    with pytest.raises(RouteNotFound):
        table.match(None, "/ordersx", "GET")


def route(name: str, path: str = "/orders", extra: str = "", upstream: str = UP) -> str:
    return f'[[routes]]\nname = "{name}"\npath = "{path}"\nupstream = "{upstream}"\n{extra}\n'


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("", "", id="both-any-method"),
        pytest.param('methods = ["GET"]', 'methods = ["GET", "POST"]', id="overlapping-methods"),
        pytest.param('methods = ["GET"]', 'methods = ["HEAD"]', id="head-implied-by-get"),
        pytest.param('host = "a.test"', 'host = "A.test"', id="same-host"),
        pytest.param('host = "a.test"', 'host = "a.test."', id="same-host-trailing-dot"),
        pytest.param("", "", id="trailing-slash-same-path"),
    ],
)
def test_ambiguous_routes_refused_naming_both(
    write_config: Callable[[str], Config], a: str, b: str
) -> None:
    routes = write_config(route("first", extra=a) + route("second", "/orders/", b)).routes
    with pytest.raises(ConfigError, match="routes: 'first' and 'second'"):
        RouteTable.from_config(routes)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param('methods = ["GET"]', 'methods = ["POST"]', id="disjoint-methods"),
        pytest.param('methods = ["GET"]', "", id="specific-and-any"),
        pytest.param('host = "a.test"', "", id="host-and-hostless"),
        pytest.param('host = "a.test"', 'host = "b.test"', id="different-hosts"),
    ],
)
def test_distinguishable_routes_accepted(
    write_config: Callable[[str], Config], a: str, b: str
) -> None:
    RouteTable.from_config(write_config(route("first", extra=a) + route("second", extra=b)).routes)


@pytest.mark.parametrize(
    "path", ["/oauth", "/oauth/token", "/.well-known/x", "/healthz", "/readyz", "/metrics/"]
)
def test_reserved_prefixes_refused(write_config: Callable[[str], Config], path: str) -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.path: is reserved"):
        write_config(route("r", path))


async def test_404_and_405_responses(gateway: GatewayFactory, echo: str) -> None:
    gw = await gateway(route("read", "/orders", 'methods = ["GET"]\npublic = true', echo))
    missing = await gw.client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await gw.client.post("/orders/1")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD"
    assert wrong.json()["error"] == "method_not_allowed"
    ok = await gw.client.get("/orders/1")
    assert ok.status_code == 200
    head = await gw.client.head("/orders/1")
    assert head.status_code == 200


async def test_hosts_route_through_the_gateway(gateway: GatewayFactory, echo: str) -> None:
    gw = await gateway(
        f'[[routes]]\nhost = "api.test"\npath = "/"\npublic = true\nupstream = "{echo}/api"\n'
        f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}/web"\n'
    )
    api = await gw.client.get("/x", headers={"Host": "API.test"})
    web = await gw.client.get("/x", headers={"Host": "www.test"})
    assert (api.json()["path"], web.json()["path"]) == ("/api/x", "/web/x")


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        pytest.param("admin.local..", "must be a host name", id="two-trailing-dots"),
        pytest.param("a@admin.local", "must be a host name", id="userinfo"),
        pytest.param("admin local", "must be a host name", id="space"),
        pytest.param("", "must be a host name", id="empty"),
        pytest.param("::1", "must be a host name", id="ipv6-unbracketed"),
        pytest.param("admin.local:8443", "must not carry a port", id="port"),
    ],
)
def test_a_route_host_that_is_not_a_host_is_refused(
    write_config: Callable[[str], Config], host: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=rf"routes\[0\]\.host: {problem}"):
        write_config(route("r", extra=f'host = "{host}"'))


def test_a_route_host_is_normalised(write_config: Callable[[str], Config]) -> None:
    [config] = write_config(route("", extra='host = "Admin.Local."')).routes
    assert (config.host, config.name) == ("admin.local", "admin.local/orders")


HOST_ROUTES = (
    '[[routes]]\nhost = "admin.local"\npath = "/console"\nupstream = "{echo}/admin"\n'
    'scopes = ["admin"]\n'
    '[[routes]]\npath = "/console"\npublic = true\nupstream = "{echo}/public"\n'
)


@pytest.mark.parametrize(
    ("host", "status"),
    [
        pytest.param("admin.local", 401, id="plain"),
        pytest.param("admin.local.", 401, id="trailing-dot"),
        pytest.param("ADMIN.LOCAL", 401, id="upper-case"),
        pytest.param("admin.local:8443", 401, id="port"),
        pytest.param("Admin.Local.:8443", 401, id="dot-case-port"),
        pytest.param("www.local", 200, id="other-host-public"),
        pytest.param("", 200, id="empty-host-public"),
        pytest.param("admin.local..", 400, id="two-trailing-dots"),
        pytest.param("a@admin.local", 400, id="userinfo"),
        pytest.param("admin.local:", 400, id="empty-port"),
        pytest.param("admin%2elocal", 400, id="percent-encoded"),
    ],
)
async def test_every_spelling_of_a_host_reaches_its_route(
    gateway: GatewayFactory, echo: str, host: str, status: int
) -> None:
    """Issue 15 §1: ``Host: admin.local.`` reached the host-less public route, no token asked."""
    gw = await gateway(HOST_ROUTES.format(echo=echo))
    response = await raw_request(gw.port, "/console/x", host=host)
    assert response.status == status, response
    if status == 200:
        assert b'"path": "/public/console/x"' in response.body
    else:
        assert b'"path"' not in response.body  # the upstream was never reached


async def test_a_request_without_host_matches_host_less_routes(
    gateway: GatewayFactory, echo: str
) -> None:
    """HTTP/1.0 needs no Host (RFC 9112 §3.2 asks it of HTTP/1.1 only)."""
    gw = await gateway(HOST_ROUTES.format(echo=echo))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /console/x HTTP/1.0\r\n\r\n")
    data = await reader.read(-1)
    writer.close()
    await writer.wait_closed()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b'"path": "/public/console/x"' in data
