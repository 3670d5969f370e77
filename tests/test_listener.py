"""The listener's descriptor budget (``gateway/listener.py``), each case in a process of its own
started with a lowered ``RLIMIT_NOFILE``: the connections a process holds, the soft limit
raised at start as far as ``max_connections`` needs, the warning when the hard limit is short.
(``tests/test_listener_connections.py`` holds the same against ``gateway serve``.) Then
the protocol under uvicorn in a thread, serving an app of the test's that answers late: what
a refusal pipelined behind another request does."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from gateway.config import Config
from gateway.descriptors import RESERVED_DESCRIPTORS
from gateway.listener import ConnectionLimits, GatewayProtocol
from tests.support.live import wait_until

#: prints the capacity before and after ``fit_descriptor_limit``, and the soft limit after
SCRIPT = """
import json, logging, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from gateway.config import Config, ProxyConfig, RouteConfig, ServerConfig
from gateway.descriptors import connection_capacity, fit_descriptor_limit
max_connections, origins = json.loads(sys.argv[1])
config = Config(
    server=ServerConfig(max_connections=max_connections),
    proxy=ProxyConfig(max_connections_per_origin=256),
    routes=tuple(
        RouteConfig(path=f"/r{n}", upstream=f"http://127.0.0.1:{9000 + n}/x")
        for n in range(origins)
    ),
)
before = connection_capacity(config)
fit_descriptor_limit(config)
after = connection_capacity(config)
print(json.dumps([before, after, resource.getrlimit(resource.RLIMIT_NOFILE)[0]]))
"""


def budget(soft: int, hard: int, max_connections: int, origins: int = 0) -> dict[str, Any]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps([max_connections, origins])],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=limit,
        timeout=60,
    )
    before, after, soft_after = json.loads(done.stdout)
    return {"before": before, "after": after, "soft": soft_after, "log": done.stderr}


def test_a_short_hard_limit_caps_the_connections_below_it_and_warns() -> None:
    found = budget(300, 300, 10_000)
    assert found["soft"] == 300
    # the descriptors open at start (a few) and the reserve come off the limit
    assert 300 - RESERVED_DESCRIPTORS - 40 < found["after"] < 300 - RESERVED_DESCRIPTORS
    assert "max_connections = 10000 does not fit in the file descriptor limit (300)" in found["log"]


def test_the_soft_limit_is_raised_as_far_as_max_connections_needs() -> None:
    found = budget(300, 8192, 1000, origins=1)
    assert found["before"] < 1000
    assert found["after"] == 1000
    # the clients, their upstream connections (one origin: at most 256), the reserve
    assert 1000 + 256 + RESERVED_DESCRIPTORS < found["soft"] <= 8192
    assert found["log"] == ""


def test_upstream_connections_take_at_most_half_of_what_is_left() -> None:
    alone = budget(1024, 1024, 10_000)["after"]
    two_origins = budget(1024, 1024, 10_000, origins=2)["after"]  # 512 upstream connections
    assert two_origins == pytest.approx(alone / 2, abs=3)


# --- the protocol under uvicorn, serving an app of the test's ------------------------------


class SlowApp:
    """Answers ``/slow`` after half a second, anything else at once; it holds the
    limits the listener's protocol reads, as ``GatewayApp`` does."""

    def __init__(self) -> None:
        self.connection_limits = ConnectionLimits(Config(), lambda _: None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": [LENGTH]})
        await send({"type": "http.response.body", "body": b"ok"})


LENGTH = (b"content-length", b"2")


@pytest.fixture
def slow_server() -> Iterator[int]:
    """uvicorn with the gateway's protocol, in a thread, on a free port; yields the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            SlowApp(),
            http=GatewayProtocol,
            loop="uvloop",
            lifespan="off",
            log_config=None,
            proxy_headers=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            wait_until(lambda: server.started, "uvicorn to start")
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            thread.join(10)


def test_a_refusal_behind_a_pending_response_is_not_taken_for_it(slow_server: int) -> None:
    """Pipelined behind a request still being answered, a refused request closes the
    connection without a word (the first request's answer is lost with it: a client retries
    it): an answer would be read as the first request's response."""
    with socket.create_connection(("127.0.0.1", slow_server), timeout=10) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert b" 400 " not in received, received


def test_a_refusal_once_the_answers_are_sent_is_answered(slow_server: int) -> None:
    with socket.create_connection(("127.0.0.1", slow_server), timeout=10) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        first = b""
        while not first.endswith(b"ok"):
            first += sock.recv(65536)
        sock.sendall(b"GET /x HTTP/1.1\r\n\r\n")
        second = b""
        while chunk := sock.recv(65536):
            second += chunk
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert second.startswith(b"HTTP/1.1 400 Bad Request\r\n")
