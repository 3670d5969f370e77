"""The proxy's access-log lines and request ids: one line per request with exactly the
documented keys, the values of an allowed, a denied and an unrouted request, never a
credential or query, and ``X-Request-Id`` kept from trusted peers only, returned to the client
and forwarded upstream."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from aiohttp import web

from tests.support.accesslog import LogPipe, assert_shape
from tests.support.proxy import (
    GatewayFactory,
    RawHandler,
    raw_request,
    read_request_head,
    upstream_header,
)

Serve = Callable[[web.Application], Awaitable[str]]
RawUpstream = Callable[[RawHandler], Awaitable[str]]
Mint = Callable[..., str]

GENERATED = re.compile(r"[0-9a-f]{32}")


def routes(upstream: str, trusted: str = "") -> str:
    return f"""
[proxy]
trusted_proxies = [{trusted}]
[[routes]]
name = "orders"
path = "/orders"
upstream = "{upstream}"
scopes = ["orders:read"]
[[routes]]
name = "open"
path = "/open"
upstream = "{upstream}"
public = true
"""


async def test_an_allowed_request_logs_its_route_token_and_upstream(
    gateway: GatewayFactory, echo: str, mint: Mint, access_log: LogPipe
) -> None:
    gw = await gateway(routes(echo), access_log=access_log.log)
    token = mint("orders:read", sub="alice", client_id="app-1")
    before = time.time()
    response = await gw.client.post(
        "/orders/7?page=2", content=b"x" * 1234, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    entry = await asyncio.to_thread(access_log.entry)
    assert_shape(entry)
    stamp = entry.pop("time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    logged = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 1 <= logged <= time.time()
    duration, upstream_ms = entry.pop("duration_ms"), entry.pop("upstream_ms")
    assert 0 < upstream_ms <= duration
    assert entry == {
        "request_id": response.headers["x-request-id"],
        "route": "orders",
        "method": "POST",
        "path": "/orders/7",
        "status": 200,
        "upstream_status": 200,
        "client_id": "app-1",
        "sub": "alice",
        "reason": None,
        "bytes_in": 1234,
        "bytes_out": len(response.content),
    }
    assert GENERATED.fullmatch(entry["request_id"])
    assert upstream_header(response, "x-request-id") == [entry["request_id"]]


@pytest.mark.parametrize(
    ("path", "token", "status", "reason", "route", "identified"),
    [
        pytest.param("/orders/1", None, 401, "missing_token", "orders", False, id="no-token"),
        pytest.param(
            "/orders/1", {"exp": 1000}, 401, "token_expired", "orders", False, id="expired"
        ),
        pytest.param(
            "/orders/1", {"scope": "orders:write"}, 403, "insufficient_scope", "orders", True,
            id="insufficient-scope",
        ),
        pytest.param("/nowhere", None, 404, "not_found", None, False, id="no-route"),
    ],
)  # fmt: skip
async def test_a_denied_request_logs_why(
    gateway: GatewayFactory,
    echo: str,
    mint: Mint,
    access_log: LogPipe,
    path: str,
    token: dict[str, object] | None,
    status: int,
    reason: str,
    route: str | None,
    identified: bool,
) -> None:
    gw = await gateway(routes(echo), access_log=access_log.log)
    headers = {"Authorization": f"Bearer {mint(**token)}"} if token is not None else {}
    response = await gw.client.get(path, headers=headers)
    assert response.status_code == status
    entry = await asyncio.to_thread(access_log.entry)
    assert_shape(entry)
    assert (entry["status"], entry["reason"], entry["route"], entry["path"]) == (
        status,
        reason,
        route,
        path,
    )
    assert (entry["upstream_status"], entry["upstream_ms"]) == (None, None)
    who = ("app-1", "alice") if identified else (None, None)
    assert (entry["client_id"], entry["sub"]) == who
    assert (entry["bytes_in"], entry["bytes_out"]) == (0, len(response.content))
    assert response.headers["x-request-id"] == entry["request_id"]


async def test_no_credential_cookie_or_query_reaches_a_line(
    gateway: GatewayFactory, echo: str, mint: Mint, access_log: LogPipe
) -> None:
    gw = await gateway(routes(echo), access_log=access_log.log)
    token = mint("orders:read")
    secrets = [token, "s3ss10n-c00kie", "hunter2-password", "q-access-token", "q-secret"]
    query = {"access_token": secrets[3], "client_secret": secrets[4], "password": secrets[2]}
    headers = {"Cookie": f"session={secrets[1]}", "X-Api-Password": secrets[2]}
    for auth in (f"Bearer {token}", "Bearer not-a-valid-token", f"Basic {secrets[2]}"):
        for path in ("/orders/1", "/open/1", "/nowhere"):
            await gw.client.get(path, params=query, headers={**headers, "Authorization": auth})
    lines = b"".join(await asyncio.to_thread(access_log.lines, 9)).decode()
    for secret in secrets:
        assert secret not in lines
    assert "?" not in lines and "session" not in lines and "access_token" not in lines


async def test_an_upstreams_request_id_is_replaced_by_the_requests(
    gateway: GatewayFactory, serve: Serve, access_log: LogPipe
) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"X-Request-Id": "upstream-chose-this"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    gw = await gateway(routes(await serve(app)), access_log=access_log.log)
    response = await gw.client.get("/open/x")
    entry = await asyncio.to_thread(access_log.entry)
    assert response.headers.get_list("x-request-id") == [entry["request_id"]]
    assert GENERATED.fullmatch(entry["request_id"])


@pytest.mark.parametrize(
    ("trusted", "sent", "kept"),
    [
        pytest.param('"127.0.0.1"', ["lb-1234-abcd"], True, id="trusted-valid"),
        pytest.param('"127.0.0.0/8"', ["~" * 128], True, id="trusted-128-chars"),
        pytest.param("", ["lb-1234-abcd"], False, id="untrusted"),
        pytest.param('"10.0.0.0/8"', ["lb-1234-abcd"], False, id="other-network-trusted"),
        pytest.param('"127.0.0.1"', ["x" * 129], False, id="too-long"),
        pytest.param('"127.0.0.1"', ["has space"], False, id="space"),
        pytest.param('"127.0.0.1"', ["tab\there"], False, id="control"),
        pytest.param('"127.0.0.1"', ["a", "b"], False, id="sent-twice"),
    ],
)
async def test_request_id_is_kept_only_from_a_trusted_peer_when_valid(
    gateway: GatewayFactory,
    echo: str,
    access_log: LogPipe,
    trusted: str,
    sent: list[str],
    kept: bool,
) -> None:
    gw = await gateway(routes(echo, trusted), access_log=access_log.log)
    response = await gw.client.get("/open/x", headers=[("X-Request-Id", v) for v in sent])
    entry = await asyncio.to_thread(access_log.entry)
    expected = sent[0] if kept else entry["request_id"]
    if not kept:
        assert GENERATED.fullmatch(expected)
    assert entry["request_id"] == expected
    assert response.headers.get_list("x-request-id") == [expected]
    assert upstream_header(response, "x-request-id") == [expected]


async def test_a_request_id_is_returned_on_errors_from_a_trusted_peer_too(
    gateway: GatewayFactory, echo: str, access_log: LogPipe
) -> None:
    gw = await gateway(routes(echo, '"127.0.0.1"'), access_log=access_log.log)
    response = await gw.client.get("/orders/1", headers={"X-Request-Id": "edge-42"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "edge-42"
    assert (await asyncio.to_thread(access_log.entry))["request_id"] == "edge-42"


async def test_a_hostile_path_is_logged_capped_and_escaped(
    gateway: GatewayFactory, echo: str, access_log: LogPipe
) -> None:
    gw = await gateway(routes(echo), access_log=access_log.log)
    response = await raw_request(gw.port, "/%ff%22%0a" + "a" * 60000 + "?token=q-secret")
    assert response.status == 400
    (line,) = await asyncio.to_thread(access_log.lines, 1)
    assert len(line) < 2048
    entry = (await asyncio.to_thread(access_log.entries, 1))[0]
    assert entry["path"] == "/%ff%22%0a" + "a" * (1024 - 3 - 10) + "..."
    assert entry["reason"] == "invalid_request"


async def test_an_aborted_response_logs_the_status_sent_and_why(
    gateway: GatewayFactory, raw_upstream: RawUpstream, access_log: LogPipe
) -> None:
    async def dies_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    gw = await gateway(routes(await raw_upstream(dies_mid_body)), access_log=access_log.log)
    with pytest.raises(httpx.RemoteProtocolError):
        await gw.client.get("/open/x")
    entry = await asyncio.to_thread(access_log.entry)
    assert (entry["status"], entry["upstream_status"], entry["reason"]) == (200, 200, "bad_gateway")
    assert entry["bytes_out"] == 10


async def test_the_text_format_is_one_line_with_the_same_fields(
    gateway: GatewayFactory, echo: str, mint: Mint
) -> None:
    pipe = LogPipe("text")
    try:
        gw = await gateway(routes(echo), access_log=pipe.log)
        token = mint("orders:read", sub="alice", client_id="app-1")
        headers = {"Authorization": f"Bearer {token}"}
        response = await gw.client.get("/orders/7?q=1", headers=headers)
        await gw.client.get("/nowhere")
        ok, missing = (line.decode() for line in await asyncio.to_thread(pipe.lines, 2))
    finally:
        pipe.close()
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(
        r"\S+Z GET /orders/7 200 [\d.]+ms request_id=" + request_id + r" route=orders"
        r" upstream_status=200 upstream_ms=[\d.]+ client_id=app-1 sub=alice reason=-"
        rf" bytes_in=0 bytes_out={len(response.content)}\n",
        ok,
    ), ok
    assert " GET /nowhere 404 " in missing and " route=- " in missing
    assert " upstream_status=- upstream_ms=- client_id=- sub=- reason=not_found " in missing
