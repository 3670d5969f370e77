"""One request context for every door (``gateway.context``): the gateway's own endpoints,
``/decisions`` and the proxy take a request's id, path and peer the same way, and log them the
same way."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.app import GatewayApp, create_app
from gateway.config import Config, ProxyConfig
from gateway.storage import Storage
from tests.support.accesslog import LogPipe

#: (the decoded path a server hands over, the route the log names): one request per door
DOORS = [
    pytest.param("/healthz?x", None, id="own-endpoint"),
    pytest.param("/decisions/a?b", "/decisions", id="decisions"),
    pytest.param("/orders?c", None, id="proxy"),
]
TRUSTED = "192.0.2.10"


@pytest.fixture
def logged_app(config: Config, storage: Storage, access_log: LogPipe) -> Iterator[GatewayApp]:
    """The gateway, with ``TRUSTED`` in ``[proxy] trusted_proxies``, logging to a pipe."""
    app = create_app(dataclasses.replace(config, proxy=ProxyConfig(trusted_proxies=(TRUSTED,))))
    app.access_log = app.proxy.access_log = access_log.log
    yield app
    app.gateway.storage.dispose()


async def ask(app: GatewayApp, path: str, peer: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """One request through the ASGI app as a server without ``raw_path`` hands it over; the
    response's ``X-Request-Id``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"gw.test"), *headers],
        "client": (peer, 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    return dict(start["headers"]).get(b"x-request-id")


@pytest.mark.parametrize(("path", "route"), DOORS)
async def test_every_door_logs_the_path_as_sent_from_a_server_without_raw_path(
    logged_app: GatewayApp, access_log: LogPipe, path: str, route: str | None
) -> None:
    """The path a server decoded is encoded back canonically: a decoded '?' came from %3F."""
    await ask(logged_app, path, "127.0.0.1", [])
    logged = await asyncio.to_thread(access_log.entry)
    assert (logged["path"], logged["route"]) == (path.replace("?", "%3F"), route)


@pytest.mark.parametrize(("path", "route"), DOORS)
async def test_every_door_keeps_a_trusted_peers_request_id_and_only_that(
    logged_app: GatewayApp, access_log: LogPipe, path: str, route: str | None
) -> None:
    sent = [(b"x-request-id", b"edge-7")]
    assert await ask(logged_app, path, TRUSTED, sent) == b"edge-7"
    assert (await asyncio.to_thread(access_log.entry))["request_id"] == "edge-7"
    replaced = await ask(logged_app, path, "203.0.113.9", sent)
    assert replaced is not None and replaced != b"edge-7" and len(replaced) == 32
    assert (await asyncio.to_thread(access_log.entry))["request_id"] == replaced.decode()
