"""The route table: precedence, ambiguity refused at start, 404 and 405 with Allow."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.config import Config
from gateway.errors import ConfigError, MethodNotAllowed, RouteNotFound
from gateway.proxy import RouteTable, routes
from tests.proxy.conftest import GatewayFactory

UP = "http://127.0.0.1:9"

TABLE = f"""
[[routes]]
name = "api-host"
host = "API.example.test"
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


MATCHES = [
    pytest.param("api.example.test", "/orders/1", "GET", "api-host", id="host-before-path"),
    pytest.param("API.example.test:8443", "/x", "GET", "api-host", id="host-with-port"),
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


@pytest.mark.parametrize(("host", "path", "method", "expected"), MATCHES)
def test_most_specific_route_wins(
    table: RouteTable, host: str | None, path: str, method: str, expected: str
) -> None:
    assert table.match(host and host.lower(), path, method).name == expected


@pytest.mark.parametrize("scan_limit", [0, routes.SCAN_LIMIT], ids=["dict-probes", "scan"])
def test_small_and_large_tables_match_alike(
    write_config: Callable[[str], Config], monkeypatch: pytest.MonkeyPatch, scan_limit: int
) -> None:
    """A small table is scanned longest path first, a large one probed segment by segment."""
    monkeypatch.setattr(routes, "SCAN_LIMIT", scan_limit)
    table = RouteTable.from_config(write_config(TABLE).routes)
    for case in MATCHES:
        host, path, method, expected = case.values
        assert table.match(host and host.lower(), path, method).name == expected, case.id


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
