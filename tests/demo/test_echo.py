"""``gateway demo``'s pieces: the echo upstream and its three routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from gateway.demo.echo import EchoUpstream, start_echo_upstream
from gateway.demo.routes import demo_routes
from gateway.proxy.routes import RouteTable
from tests.support.proxy import GatewayFactory, upstream_header


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoUpstream]:
    server = await start_echo_upstream("127.0.0.1", 0)
    yield server
    await server.stop()


def test_demo_routes_form_a_valid_table() -> None:
    table = RouteTable.from_config(demo_routes("http://127.0.0.1:9"))
    assert table.match(None, "/demo/public/x", "DELETE").name == "demo-public"
    assert table.match(None, "/demo/items", "HEAD").name == "demo-read"
    assert table.match(None, "/demo/items", "PATCH").name == "demo-write"


async def test_demo_through_the_proxy(
    gateway: GatewayFactory, echo_server: EchoUpstream, mint: Callable[..., str]
) -> None:
    gw = await gateway("", routes=demo_routes(echo_server.url))
    public = await gw.client.get("/demo/public/hello", params={"a": "1"})
    assert (public.json()["path"], public.json()["query"]) == ("/demo/public/hello", "a=1")
    reader = {"Authorization": f"Bearer {mint('demo:read')}"}
    assert (await gw.client.get("/demo/items")).status_code == 401
    read = await gw.client.get("/demo/items", headers=reader)
    assert upstream_header(read, "x-forwarded-scopes") == ["demo:read"]
    assert (await gw.client.post("/demo/items", headers=reader)).status_code == 403
    writer = {"Authorization": f"Bearer {mint('demo:write')}"}
    assert (await gw.client.post("/demo/items", headers=writer, content=b"12")).json()[
        "body_bytes"
    ] == 2
    events = await gw.client.get("/demo/public/events", params={"count": "2", "interval": "0"})
    assert events.headers["content-type"] == "text/event-stream"
    assert events.text.count("event: tick\n") == 2
