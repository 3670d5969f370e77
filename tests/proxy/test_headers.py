"""Header rewriting: identity scrubbing, X-Forwarded-* trust, hop-by-hop (RFC 9110 §7.6.1)
both ways, the upstream's Host, base paths and strip_prefix."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.proxy import (
    GatewayFactory,
    RawHandler,
    raw_request,
    read_request_head,
    upstream_header,
    upstream_headers,
)

IDENTITY = ("x-forwarded-user", "x-forwarded-email", "x-forwarded-client-id", "x-forwarded-scopes")


def routes(echo: str) -> str:
    return (
        f'[[routes]]\npath = "/public"\npublic = true\nupstream = "{echo}"\n'
        f'[[routes]]\npath = "/private"\nupstream = "{echo}"\n'
    )


@pytest.mark.parametrize(
    "name",
    [
        "X-Forwarded-User",
        "x-forwarded-user",
        "X_Forwarded_User",
        "X-FORWARDED_user",
        "x_forwarded-email",
        "X-Forwarded-Client-Id",
        "x_forwarded_scopes",
    ],
)
@pytest.mark.parametrize("path", ["/public", "/private"])
async def test_client_identity_headers_never_reach_the_upstream(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], name: str, path: str
) -> None:
    gw = await gateway(routes(echo))
    response = await gw.client.get(
        path, headers={name: "mallory", "Authorization": f"Bearer {mint('s')}"}
    )
    assert response.status_code == 200
    received = upstream_headers(response)
    assert not [v for n, v in received if v == "mallory"]
    gateway_set = [(n, v) for n, v in received if n.replace("_", "-") in IDENTITY]
    if path == "/public":
        assert gateway_set == []
    else:
        assert sorted(gateway_set) == [
            ("x-forwarded-client-id", "app-1"),
            ("x-forwarded-scopes", "s"),
            ("x-forwarded-user", "alice"),
        ]


async def test_configured_identity_names_are_scrubbed(gateway: GatewayFactory, echo: str) -> None:
    gw = await gateway(
        f'[proxy.identity_headers]\nuser = "Remote-User"\n'
        f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n'
    )
    response = await gw.client.get("/", headers={"remote_user": "mallory", "X-Other_Name": "1"})
    assert upstream_header(response, "remote_user") == []
    assert upstream_header(response, "x-other_name") == ["1"]


SPOOFED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "shop.example",
    "Forwarded": "for=203.0.113.9;proto=https",
}


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        pytest.param(
            "[]",
            {
                "x-forwarded-for": "127.0.0.1",
                "x-forwarded-proto": "http",
                "x-forwarded-host": "gw.test",
                "forwarded": 'for=127.0.0.1;proto=http;host="gw.test"',
            },
            id="untrusted-peer-replaced",
        ),
        pytest.param(
            '["10.0.0.0/8", "127.0.0.1"]',
            {
                "x-forwarded-for": "203.0.113.9, 127.0.0.1",
                "x-forwarded-proto": "https",
                "x-forwarded-host": "shop.example",
                "forwarded": 'for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host="gw.test"',
            },
            id="trusted-peer-extended",
        ),
        pytest.param(
            '["127.0.0.0/8"]',
            {
                "x-forwarded-for": "203.0.113.9, 127.0.0.1",
                "x-forwarded-proto": "https",
                "x-forwarded-host": "shop.example",
                "forwarded": 'for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host="gw.test"',
            },
            id="trusted-network",
        ),
    ],
)
async def test_forwarded_headers_trusted_only_from_trusted_proxies(
    gateway: GatewayFactory, echo: str, trusted: str, expected: dict[str, str]
) -> None:
    gw = await gateway(
        f"[proxy]\ntrusted_proxies = {trusted}\n"
        f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n'
    )
    response = await gw.client.get("/", headers={**SPOOFED, "Host": "gw.test"})
    received = {n: upstream_header(response, n) for n in expected}
    assert received == {n: [v] for n, v in expected.items()}


@pytest.mark.parametrize(
    ("host", "forwarded_host"),
    [
        pytest.param("shop.example", "shop.example", id="plain"),
        pytest.param("Shop.Example.", "shop.example", id="case-trailing-dot"),
        pytest.param("SHOP.example.:8443", "shop.example:8443", id="port-kept"),
        pytest.param("shop.example:0443", "shop.example:443", id="port-normalised"),
        pytest.param("[0:0::1]:8000", "[::1]:8000", id="ipv6"),
    ],
)
async def test_the_forwarded_host_is_the_clients_normalised(
    gateway: GatewayFactory, echo: str, host: str, forwarded_host: str
) -> None:
    """Issue 15 §1: X-Forwarded-Host and ``Forwarded: host=`` carry the host the route matched
    (lower-case, no trailing dot) with the port the client used."""
    gw = await gateway(f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n')
    response = await gw.client.get("/", headers={"Host": host})
    assert upstream_header(response, "x-forwarded-host") == [forwarded_host]
    assert upstream_header(response, "forwarded") == [
        f'for=127.0.0.1;proto=http;host="{forwarded_host}"'
    ]


async def test_hop_by_hop_request_headers_removed(gateway: GatewayFactory, echo: str) -> None:
    gw = await gateway(f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n')
    headers = {
        "Connection": "keep-alive, X-Secret, x-forwarded-for",
        "X-Secret": "named-by-connection",
        "Keep-Alive": "timeout=5",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "Upgrade": "h2c",
        "X-Kept": "yes",
    }

    async def body() -> Any:
        yield b"chunked "
        yield b"body"

    response = await gw.client.post("/", headers=headers, content=body())
    received = dict(upstream_headers(response))
    for name in headers:
        if name != "X-Kept":
            assert name.lower() not in received, name
    assert received["x-kept"] == "yes"
    assert received["host"] == echo.removeprefix("http://")
    assert received["x-forwarded-for"] == "127.0.0.1"  # added by the gateway, not dropped
    assert response.json()["body_bytes"] == len(b"chunked body")


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        pytest.param("100-continue", ["100-continue"], id="100-continue"),
        pytest.param("100-Continue", ["100-continue"], id="any-case"),
        pytest.param("something-else", [], id="other-dropped"),
    ],
)
async def test_expect_100_continue_is_passed_on(
    gateway: GatewayFactory, echo: str, sent: str, received: list[str]
) -> None:
    """RFC 9110 §10.1.1: a proxy forwards a 100-continue expectation, so the upstream decides
    whether it wants the body; the echo upstream answers 100 Continue and reads it."""
    gw = await gateway(f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n')
    response = await gw.client.post("/", headers={"Expect": sent}, content=b"the body")
    assert upstream_header(response, "expect") == received
    assert response.json()["body_bytes"] == len(b"the body")


async def test_hop_by_hop_response_headers_removed(
    gateway: GatewayFactory, raw_upstream: Callable[[RawHandler], Awaitable[str]]
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Connection: keep-alive, X-Internal\r\n"
            b"X-Internal: upstream-secret\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Authenticate: Basic\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Trailer: X-Checksum\r\n"
            b"Upgrade: h2c\r\n"
            b"Set-Cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\n"
            b"X-Kept: yes\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        await writer.drain()
        writer.close()

    gw = await gateway(
        f'[[routes]]\npath = "/"\npublic = true\nupstream = "{await raw_upstream(handle)}"\n'
    )
    response = await raw_request(gw.port, "/")
    names = {n for n, _ in response.headers}
    dropped = {"x-internal", "keep-alive", "proxy-authenticate", "proxy-connection", "trailer"}
    assert names & (dropped | {"upgrade"}) == set()
    assert response.header("x-kept") == ["yes"]
    assert response.header("set-cookie") == ["a=1", "b=2"]
    assert response.body == b"ok"


@pytest.mark.parametrize(
    ("base", "strip", "path", "expected"),
    [
        pytest.param("", "false", "/orders/7", "/orders/7", id="plain"),
        pytest.param("/v1", "false", "/orders/7", "/v1/orders/7", id="base-path"),
        pytest.param("/v1/", "false", "/orders", "/v1/orders", id="base-path-slash"),
        pytest.param("", "true", "/orders/7", "/7", id="strip"),
        pytest.param("", "true", "/orders", "/", id="strip-to-root"),
        pytest.param("/v1", "true", "/orders/7/items", "/v1/7/items", id="base-and-strip"),
    ],
)
async def test_upstream_path(
    gateway: GatewayFactory, echo: str, base: str, strip: str, path: str, expected: str
) -> None:
    gw = await gateway(
        f'[[routes]]\npath = "/orders"\npublic = true\nstrip_prefix = {strip}\n'
        f'upstream = "{echo}{base}"\n'
    )
    response = await gw.client.get(path, params={"q": "1"})
    assert (response.json()["path"], response.json()["query"]) == (expected, "q=1")
