"""The access log of a real ``gateway serve`` (two workers sharing stderr): JSON by default,
one whole line per request, the request id returned and forwarded upstream."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accesslog import assert_shape
from tests.support.live import (
    START_TIMEOUT,
    LiveGateway,
    free_port,
    running_demo,
    running_gateway,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.live

BURST = 200


class Upstream(http.server.BaseHTTPRequestHandler):
    """Answers with the ``X-Request-Id`` values it received, as JSON."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps(self.headers.get_all("X-Request-Id")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def logged_gateway(
    tmp_path_factory: pytest.TempPathFactory, live_database_url: str
) -> Iterator[LiveGateway]:
    """A server of its own (two workers, routes to ``upstream``) on the live suite's database."""
    folder = tmp_path_factory.mktemp("logged")
    with upstream() as url:
        routes = f"""
[[routes]]
name = "echo"
path = "/echo"
upstream = "{url}"
public = true
[[routes]]
name = "orders"
path = "/orders"
upstream = "{url}"
scopes = ["orders:read"]
"""
        with running_gateway(
            folder / "gateway",
            live_database_url,
            extra_toml=routes,
            serve_args=("--workers", "2"),
        ) as gateway:
            yield gateway


def access_lines(gateway: LiveGateway) -> list[dict[str, Any]]:
    """The access-log lines so far (the log also holds uvicorn's own lines, in text)."""
    lines = [line for line in gateway.server_log().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def logged(gateway: LiveGateway, count: int) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (lines := access_lines(gateway)) and len(lines) >= count and lines,
        f"{count} access-log lines",
    )


def test_serve_logs_one_json_line_per_request(logged_gateway: LiveGateway) -> None:
    gateway = logged_gateway
    client = gateway.create_client("Logged app", grant_types=("client_credentials",))
    base = gateway.base_url
    echoed = httpx.get(f"{base}/echo/x?secret=q-secret", headers={"X-Request-Id": "mine"})
    denied = httpx.get(f"{base}/orders/1", headers={"Cookie": "session=c00kie"})
    token = httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert (echoed.status_code, denied.status_code, token.status_code) == (200, 401, 200)
    # the client's id is replaced (it is not a trusted proxy), and the upstream got ours
    request_id = echoed.headers["x-request-id"]
    assert request_id != "mine" and echoed.json() == [request_id]

    lines = logged(gateway, 4)  # /healthz (the start-up check) and the three above
    for line in lines:
        assert_shape(line)
    by_id = {line["request_id"]: line for line in lines}
    assert {k: by_id[request_id][k] for k in ("route", "path", "status", "upstream_status")} == {
        "route": "echo",
        "path": "/echo/x",
        "status": 200,
        "upstream_status": 200,
    }
    assert by_id[denied.headers["x-request-id"]]["reason"] == "missing_token"
    assert by_id[token.headers["x-request-id"]]["route"] == "/oauth/token"
    log = gateway.server_log()
    for secret in ("q-secret", "c00kie", client["client_secret"], token.json()["access_token"]):
        assert secret not in log


def test_lines_of_two_workers_never_interleave(logged_gateway: LiveGateway) -> None:
    gateway = logged_gateway
    before = len(logged(gateway, 1))

    def get(n: int) -> str:
        return httpx.get(f"{gateway.base_url}/echo/{n}").headers["x-request-id"]

    with ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(get, range(BURST)))
    assert len(ids) == BURST
    lines = logged(gateway, before + BURST)  # each one parses: none was cut or mixed
    assert ids <= {line["request_id"] for line in lines}


def test_demo_logs_text_lines(tmp_path: Path) -> None:
    """``gateway demo`` (``make run``) writes the access log as text unless told otherwise."""
    port, upstream_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "gateway.toml", base, f"sqlite:///{tmp_path / 'demo.db'}", tmp_path / "keys"
    )
    log = tmp_path / "demo.log"
    with running_demo(config, port, upstream_port, log) as process:

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200
            return False

        wait_until(up, "gateway demo", timeout=START_TIMEOUT)
        response = httpx.get(f"{base}/demo/public/x?q=q-secret")
        assert response.status_code == 200
        line = wait_until(
            lambda: next((x for x in log.read_text().splitlines() if " /demo/public/x " in x), ""),
            "the demo's access-log line",
        )
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(
        rf"\S+Z GET /demo/public/x 200 [\d.]+ms request_id={request_id} route=demo-public"
        r" upstream_status=200 upstream_ms=[\d.]+ client_id=- sub=- reason=- bytes_in=0"
        rf" bytes_out={len(response.content)}",
        line,
    ), line
    assert "q-secret" not in log.read_text()
