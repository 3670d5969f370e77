"""Upstream ``Set-Cookie`` fields that would set or clear a cookie of the gateway's, or one
scoped to its paths, never reach the client (issue 15 §3): the field parser, every odd
spelling, and the fields through a real proxy and a raw upstream, counted in the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.proxy.cookies import GATEWAY_COOKIES, refused
from tests.support.proxy import GatewayFactory, RawHandler, raw_request, read_request_head


@pytest.mark.parametrize(
    "field",
    [
        # by name: the session cookie, however spelled
        pytest.param("gateway_session=x", id="name"),
        pytest.param("gateway_device=x; Path=/", id="device-cookie"),
        pytest.param("gateway_session=x; Path=/; HttpOnly", id="name-path-root"),
        pytest.param("gateway_session=", id="name-empty-value"),
        pytest.param("gateway_session=; Max-Age=0", id="name-clearing"),
        pytest.param("GATEWAY_SESSION=x", id="name-upper"),
        pytest.param("Gateway_Session=x", id="name-mixed-case"),
        pytest.param("  gateway_session  =x", id="name-spaces"),
        pytest.param("\tgateway_session\t=x", id="name-tabs"),
        pytest.param("\xa0gateway_session=x", id="name-nbsp"),
        pytest.param('"gateway_session"=x', id="name-quoted"),
        pytest.param("gateway_session=x; Domain=example.com", id="name-domain"),
        pytest.param("gateway_session", id="nameless-bare"),
        pytest.param(" gateway_session ", id="nameless-bare-spaces"),
        pytest.param("=gateway_session=x", id="nameless-reads-as-name"),
        pytest.param(" = gateway_session = x; Path=/", id="nameless-spaces"),
        pytest.param("gateway_session;Path=/pub", id="nameless-with-attributes"),
        # by path: under /oauth or /.well-known
        pytest.param("a=1; Path=/oauth", id="path-oauth"),
        pytest.param("a=1; Path=/oauth/", id="path-oauth-slash"),
        pytest.param("a=1; Path=/oauth/token", id="path-oauth-token"),
        pytest.param("a=1; Path=/oauth/authorize/x", id="path-oauth-deep"),
        pytest.param("a=1; Path=/.well-known", id="path-well-known"),
        pytest.param("a=1; Path=/.well-known/x", id="path-well-known-x"),
        pytest.param("a=1; path=/oauth", id="attr-lower"),
        pytest.param("a=1; PATH=/oauth", id="attr-upper"),
        pytest.param("a=1; PaTh =/oauth", id="attr-space-before-equals"),
        pytest.param("a=1;Path= /oauth ", id="value-spaces"),
        pytest.param("a=1;\tPath\t=\t/oauth", id="tabs"),
        pytest.param('a=1; Path="/oauth"', id="value-quoted"),
        pytest.param("a=1; Path=/%6Fauth", id="value-percent-encoded"),
        pytest.param("a=1; Path=/oauth%2Ftoken", id="value-encoded-slash"),
        pytest.param("a=1; Path=/oauth; Path=/pub", id="several-first-under"),
        pytest.param("a=1; Path=/pub; Path=/oauth", id="several-last-under"),
        pytest.param("a=1; Path=/pub; Secure; path=/oauth/", id="several-mixed-case"),
        pytest.param("a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/oauth", id="clearing"),
        pytest.param("=x; Path=/oauth", id="empty-name-path"),
        pytest.param("a=1;;; Path=/oauth", id="empty-attributes"),
    ],
)
def test_refused(field: str) -> None:
    assert refused(field.encode("latin-1"))


@pytest.mark.parametrize(
    "field",
    [
        pytest.param("a=1", id="plain"),
        pytest.param("session=abc; Path=/; HttpOnly; SameSite=Lax", id="app-session-root"),
        pytest.param("a=1; Path=/pub", id="path-pub"),
        pytest.param("a=1; Path=/", id="path-root"),
        pytest.param("a=1; Path=/oauthx", id="path-oauthx"),
        pytest.param("a=1; Path=/oauth.html", id="path-oauth-dot"),
        pytest.param("a=1; Path=/pub/oauth", id="path-oauth-below"),
        pytest.param("a=1; Path=/.well-knownx", id="path-well-knownx"),
        pytest.param("a=1; Path=/OAUTH", id="path-other-case"),  # a path of the upstream's own
        pytest.param("a=1; Path=oauth", id="path-relative"),  # the default-path: the request's
        pytest.param("a=1; Path=", id="path-empty"),
        pytest.param("a=1; Path", id="path-no-equals"),
        pytest.param("a=1; Domain=example.com/oauth", id="oauth-in-domain"),
        pytest.param("a=/oauth", id="oauth-in-value"),
        pytest.param("a=1; Comment=Path=/oauth", id="path-in-another-attribute"),
        pytest.param("gateway_sessionx=1", id="longer-name"),
        pytest.param("xgateway_session=1", id="name-prefixed"),
        pytest.param("__Host-gateway_session=1; Path=/; Secure", id="host-prefixed-name"),
        pytest.param("a=gateway_session", id="name-in-value"),
        pytest.param("a=1; gateway_session=2", id="name-as-attribute"),
        pytest.param("=other=1", id="nameless-other"),
        pytest.param("other", id="nameless-bare-other"),
        pytest.param("", id="empty"),
    ],
)
def test_passed(field: str) -> None:
    assert not refused(field.encode("latin-1"))


def test_every_gateway_cookie_is_refused_by_name() -> None:
    assert {"gateway_session", "gateway_device"} <= GATEWAY_COOKIES
    for name in GATEWAY_COOKIES:
        assert refused(f"{name}=1; Path=/pub".encode())


async def test_refused_fields_never_reach_the_client_and_are_counted(
    gateway: GatewayFactory, raw_upstream: Callable[[RawHandler], Awaitable[str]]
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Set-Cookie: app=1; Path=/\r\n"
            b"Set-Cookie: gateway_session=evil; Path=/oauth; HttpOnly\r\n"
            b"set-cookie: a=2; PATH = /oauth/token\r\n"
            b"Set-Cookie: =GATEWAY_SESSION=evil\r\n"
            b"Set-Cookie: prefs=dark; Path=/pub; Max-Age=60\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        await writer.drain()
        writer.close()

    upstream = await raw_upstream(handle)
    gw = await gateway(
        f'[[routes]]\nname = "pub"\npath = "/pub"\npublic = true\nupstream = "{upstream}"\n'
    )
    for _ in range(2):
        response = await raw_request(gw.port, "/pub/page")
        assert response.status == 200
        assert response.header("set-cookie") == [
            "app=1; Path=/",
            "prefs=dark; Path=/pub; Max-Age=60",
        ]
        assert response.body == b"ok"
    exposed = gw.proxy.metrics.render().decode()
    assert 'gateway_upstream_cookies_dropped_total{route="pub"} 6.0' in exposed


async def test_a_response_without_refused_fields_counts_nothing(
    gateway: GatewayFactory, echo: str
) -> None:
    gw = await gateway(
        f'[[routes]]\nname = "pub"\npath = "/pub"\npublic = true\nupstream = "{echo}"\n'
    )
    assert (await gw.client.get("/pub")).status_code == 200
    assert 'gateway_upstream_cookies_dropped_total{route="pub"}' not in (
        gw.proxy.metrics.render().decode()
    )
