"""Method overrides (issue 15 §7): ``X-HTTP-Method-Override``, ``X-HTTP-Method`` and
``X-Method-Override`` are honoured only where the routes say so, and then the overriding method
is the one matched and checked; anywhere else the proxy drops them and ``/decisions`` refuses
the request (the edge would pass them on). Both doors through real servers: the proxy in front
of the echo upstream, ``/decisions`` as nginx asks it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.cases import insufficient
from tests.support.proxy import Gateway, GatewayFactory, RawResponse, raw_request

ROUTES = """
[[routes]]
path = "/orders"
methods = ["POST"]
upstream = "{echo}/post"
scopes = ["orders:write"]
allow_method_override = true

[[routes]]
path = "/orders"
methods = ["DELETE"]
upstream = "{echo}/delete"
scopes = ["orders:delete"]
allow_method_override = true

[[routes]]
path = "/orders"
methods = ["GET"]
upstream = "{echo}/get"
scopes = ["orders:read"]

[[routes]]
path = "/plain"
upstream = "{echo}/plain"
scopes = ["orders:write"]

[[routes]]
path = "/any"
upstream = "{echo}/any"
scopes = ["orders:write"]
allow_method_override = true
"""

#: every scope the routes above ask for
ALL = "orders:write orders:delete orders:read"


def overridden(response: RawResponse) -> tuple[str, str, list[tuple[str, str]]]:
    """What the echo upstream received: method, path, and the override headers (any spelling)."""
    seen = json.loads(response.body)
    names = ("x-http-method-override", "x-http-method", "x-method-override")
    headers = [(n, v) for n, v in seen["headers"] if n.lower().replace("_", "-") in names]
    return seen["method"], seen["path"], headers


async def both_doors(
    gw: Gateway, method: str, target: str, headers: str
) -> tuple[RawResponse, RawResponse]:
    """The proxy's answer, and ``/decisions``' for the same request as nginx describes it."""
    proxied = await raw_request(gw.port, target, headers, method)
    described = f"{headers}X-Original-Method: {method}\r\nX-Original-URI: {target}\r\n"
    decided = await raw_request(gw.port, "/decisions", described)
    return proxied, decided


@pytest.fixture
async def gw(gateway: GatewayFactory, echo: str) -> Gateway:
    return await gateway(ROUTES.format(echo=echo))


@pytest.mark.parametrize(
    ("header", "value", "scope", "forwarded"),
    [
        pytest.param("X-HTTP-Method-Override", "DELETE", "orders:delete", None, id="override"),
        pytest.param("X-HTTP-Method", "DELETE", "orders:delete", None, id="x-http-method"),
        pytest.param("X-Method-Override", "DELETE", "orders:delete", None, id="x-method-override"),
        pytest.param("X-HTTP-Method-Override", "delete", "orders:delete", None, id="lower-case"),
        pytest.param(
            "x_http_method_override",
            "DELETE",
            "orders:delete",
            "x-http-method-override",
            id="underscores-forwarded-with-dashes",
        ),
    ],
)
async def test_an_honoured_override_is_matched_checked_and_passed_on(
    gw: Gateway,
    mint: Callable[..., str],
    header: str,
    value: str,
    scope: str,
    forwarded: str | None,
) -> None:
    token = mint(scope)
    response = await raw_request(
        gw.port, "/orders/7", f"Authorization: Bearer {token}\r\n{header}: {value}\r\n", "POST"
    )
    assert response.status == 200, response
    # the DELETE route's upstream, the method as sent, the header spelled as the upstream reads it
    assert overridden(response) == (
        "POST",
        "/delete/orders/7",
        [(forwarded or header.lower(), "DELETE")],
    )


async def test_the_overriding_methods_scopes_are_checked(
    gw: Gateway, mint: Callable[..., str]
) -> None:
    """A token that may POST but not DELETE cannot DELETE through a POST, at either door."""
    head = f"Authorization: Bearer {mint('orders:write')}\r\nX-HTTP-Method-Override: DELETE\r\n"
    for response in await both_doors(gw, "POST", "/orders/7", head):
        assert response.status == 403
        assert response.header("www-authenticate") == [insufficient("orders:delete")]
    # without the header, the same token may POST
    plain = f"Authorization: Bearer {mint('orders:write')}\r\n"
    assert [r.status for r in await both_doors(gw, "POST", "/orders/7", plain)] == [200, 200]


@pytest.mark.parametrize(
    ("method", "target", "header"),
    [
        pytest.param("POST", "/plain/1", "X-HTTP-Method-Override: DELETE", id="route-disallows"),
        pytest.param("POST", "/plain/1", "x_http_method: DELETE", id="route-disallows-underscores"),
        pytest.param("POST", "/orders/1", "X-Method-Override: GET", id="target-route-disallows"),
        pytest.param("GET", "/any/1", "X-HTTP-Method-Override: DELETE", id="not-a-post"),
        pytest.param("PUT", "/any/1", "X-HTTP-Method: DELETE", id="put-not-a-post"),
    ],
)
async def test_an_override_not_honoured_is_dropped_by_the_proxy_and_refused_at_decisions(
    gw: Gateway, mint: Callable[..., str], method: str, target: str, header: str
) -> None:
    head = f"Authorization: Bearer {mint(ALL)}\r\n{header}\r\n"
    proxied, decided = await both_doors(gw, method, target, head)
    assert proxied.status == 200, proxied
    received_method, _, received = overridden(proxied)
    assert (received_method, received) == (method, [])
    assert decided.status == 403
    assert json.loads(decided.body) == {
        "error": "invalid_request",
        "error_description": "this route does not accept a method override",
    }


async def test_decisions_refuses_an_override_spelled_with_underscores(
    gw: Gateway, mint: Callable[..., str]
) -> None:
    """The edge passes ``x_http_method_override`` on as it is: whether the upstream reads it
    is unknown, so the gateway does not decide on it (the proxy forwards it with dashes)."""
    head = f"Authorization: Bearer {mint(ALL)}\r\nX_HTTP_Method_Override: DELETE\r\n"
    proxied, decided = await both_doors(gw, "POST", "/orders/1", head)
    assert proxied.status == 200
    assert decided.status == 403


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param("X-HTTP-Method-Override: DE LETE\r\n", id="space"),
        pytest.param("X-HTTP-Method-Override: DELETE, PUT\r\n", id="list"),
        pytest.param("X-HTTP-Method-Override: \r\n", id="empty"),
        pytest.param("X-HTTP-Method-Override: DEL\xdfTE\r\n", id="not-ascii"),
        pytest.param("X-HTTP-Method: DELETE\r\nX-HTTP-Method-Override: PUT\r\n", id="two-methods"),
        pytest.param(
            "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method-Override: GET\r\n", id="repeated"
        ),
        pytest.param("X-Method-Override: DELETE\r\nx_method_override: PATCH\r\n", id="spellings"),
        pytest.param("X-HTTP-Method-Override: G(T\r\n", id="not-a-token"),
    ],
)
@pytest.mark.parametrize("target", ["/orders/1", "/plain/1"])
async def test_a_bad_override_is_refused_whatever_the_route(
    gw: Gateway, mint: Callable[..., str], headers: str, target: str
) -> None:
    head = f"Authorization: Bearer {mint(ALL)}\r\n{headers}"
    proxied, decided = await both_doors(gw, "POST", target, head)
    assert (proxied.status, decided.status) == (400, 403)
    for response in (proxied, decided):
        assert json.loads(response.body) == {
            "error": "invalid_request",
            "error_description": "a method override header must name one HTTP method",
        }


async def test_one_method_under_several_names_is_one_override(
    gw: Gateway, mint: Callable[..., str]
) -> None:
    head = (
        f"Authorization: Bearer {mint('orders:delete')}\r\n"
        "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: delete\r\n"
    )
    proxied, decided = await both_doors(gw, "POST", "/orders/1", head)
    assert (proxied.status, decided.status) == (200, 200)
    assert overridden(proxied)[2] == [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
    ]


async def test_an_override_to_a_method_no_route_accepts_is_405(
    gw: Gateway, mint: Callable[..., str]
) -> None:
    head = f"Authorization: Bearer {mint(ALL)}\r\nX-HTTP-Method-Override: PATCH\r\n"
    proxied, decided = await both_doors(gw, "POST", "/orders/1", head)
    assert (proxied.status, decided.status) == (405, 403)
    assert proxied.header("allow") == ["DELETE, GET, HEAD, POST"]


async def test_a_connection_named_override_is_not_an_override(
    gw: Gateway, mint: Callable[..., str]
) -> None:
    """RFC 9110 §7.6.1: a header ``Connection`` names is for this hop only: dropped, not read."""
    head = (
        f"Authorization: Bearer {mint('orders:write')}\r\n"
        "Connection: close, X-HTTP-Method-Override\r\nX-HTTP-Method-Override: DELETE\r\n"
    )
    response = await raw_request(gw.port, "/orders/1", head, "POST")
    assert response.status == 200
    assert overridden(response) == ("POST", "/post/orders/1", [])
