"""Fuzzing the proxy (RFC 6750 at the resource's door): arbitrary methods, raw request
targets, query strings, headers and cookies, sent as bytes on a socket to the Proxy under
uvicorn, with a healthy echo upstream behind it. Whatever arrives:

- the status is below 500 (the upstream never fails here, so a 5xx is the gateway's fault);
- every error the gateway answers is JSON ``error`` / ``error_description``, and 401 / 403
  carry ``WWW-Authenticate: Bearer ...`` (RFC 6750 §3);
- no response, the gateway's own or the upstream's echo of what it received, contains a
  bearer token sent in ``Authorization`` (the route does not forward it).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.proxy import GatewayFactory
from tests.support.strategies import METHODS, cookies, field_value, junk, pairs, token_chars

pytestmark = pytest.mark.fuzz

ROUTES = """
[[routes]]
path = "/orders"
upstream = "{echo}"
scopes = ["orders:read"]

[[routes]]
path = "/admin"
methods = ["POST", "DELETE"]
upstream = "{echo}/v1"
scopes = [["admin"], ["orders:write"]]
strip_prefix = true

[[routes]]
path = "/public"
upstream = "{echo}"
public = true
"""
PREFIXES = ("/orders", "/orders/7", "/admin", "/admin/x", "/public", "/public/a", "/", "/nowhere")
#: the tricks decode_path refuses, and their neighbours
PATH_PIECES = (
    "..",
    ".",
    "%2e",
    "%2E%2e",
    "%2f",
    "%5C",
    "\\",
    "%00",
    "//",
    ";",
    "%252e",
    "%ff",
    "%",
    "%zz",
    "é",
    "%c3%a9",
    "?",
    "#",
    "*",
    "~",
    "@",
    ":",
)
#: uvicorn's own answer to bytes that are not HTTP/1.1, before the gateway sees the request
SERVER_REFUSAL = b"Invalid HTTP request received."


@dataclass
class Exchange:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


def send_raw(port: int, head: bytes, body: bytes) -> Exchange:
    """One request as written, on a connection the server closes; the response read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = [
        (n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines)
    ]
    if ("transfer-encoding", "chunked") in headers:
        payload = dechunk(payload)
    return Exchange(int(status_line.split()[1]), headers, payload, data)


def dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


@st.composite
def proxy_requests(draw: st.DrawFn, tokens: tuple[str, ...]) -> tuple[bytes, bytes, str | None]:
    """(head, body, bearer token sent or None)."""
    # llhttp (uvicorn's parser) knows its methods and refuses any other before the gateway
    method = draw(st.sampled_from((*METHODS, "PROPFIND", "PURGE", "MKCOL", "SEARCH")))
    path = draw(st.sampled_from(PREFIXES))
    for piece in draw(st.lists(st.one_of(st.sampled_from(PATH_PIECES), junk), max_size=4)):
        if piece not in PATH_PIECES or draw(st.booleans()):
            piece = quote(piece, safe="%/\\.;")
        path += draw(st.sampled_from(("/", ""))) + piece
    if draw(st.booleans()):
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in draw(pairs()))
    token = draw(st.one_of(st.none(), st.sampled_from(tokens)))
    headers: list[tuple[str, str]] = []
    if token is not None:
        scheme = draw(st.sampled_from(("Bearer", "bearer", "BEARER", "Basic", "Bearer ")))
        headers.append(("Authorization", f"{scheme} {token}"))
    elif draw(st.booleans()):
        headers.append(("Authorization", draw(field_value)))
    names = st.one_of(
        st.sampled_from(
            (
                "X-Forwarded-User",
                "x_forwarded_scopes",
                "X-Forwarded-For",
                "Forwarded",
                "Connection",
                "Te",
                "Upgrade",
                "Expect",
                "Accept-Encoding",
                "Host",
                "Authorization",
            )
        ),
        token_chars,
    )
    headers += draw(st.lists(st.tuples(names, field_value), max_size=5))
    if draw(st.booleans()):
        headers.append(("Cookie", draw(cookies("session", field_value))))
    body = draw(st.binary(max_size=64))
    lines = ["Host: gw.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    request_line = f"{method} {path} HTTP/1.1\r\n".encode()
    head = request_line + ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head, body, token


def check(exchange: Exchange, token: str | None, method: bytes) -> None:
    refused = exchange.body == SERVER_REFUSAL
    assert exchange.status < 500, exchange.raw
    if token is not None:
        assert token.encode() not in exchange.raw, exchange.raw
    if exchange.status < 400 or refused or method == b"HEAD":
        return
    if exchange.header("content-type") != ["application/json"]:
        return  # the echo upstream's own 400 (a bad /events query), not the gateway's
    body = json.loads(exchange.body)
    assert isinstance(body["error"], str) and isinstance(body["error_description"], str), body
    if exchange.status in (401, 403):
        (challenge,) = exchange.header("www-authenticate")
        assert challenge.startswith('Bearer realm="gateway"'), challenge
        # RFC 9728 §5.1: every refusal at a route says where its resource's metadata is
        assert 'resource_metadata="https://' in challenge, challenge
        if exchange.status == 403:
            assert 'error="insufficient_scope"' in challenge, challenge


@pytest.fixture
def tokens(mint: Callable[..., str]) -> tuple[str, ...]:
    now = int(time.time())
    return (
        mint("orders:read"),
        mint("admin"),
        mint("profile"),
        mint("orders:read", exp=now - 60, iat=now - 120),
        mint("orders:read", aud="https://elsewhere.test"),
        mint("orders:read")[:-4] + "AAAA",
    )


async def test_proxy(gateway: GatewayFactory, echo: str, tokens: tuple[str, ...]) -> None:
    gw = await gateway(ROUTES.format(echo=echo))

    @given(request=proxy_requests(tokens))
    def send(request: tuple[bytes, bytes, str | None]) -> None:
        head, body, token = request
        check(send_raw(gw.port, head, body), token, head.split(b" ", 1)[0])

    # the gateway and the upstream run on this loop; the blocking client on a thread
    await asyncio.to_thread(send)
