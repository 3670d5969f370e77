"""The edge tests' parts: the echo upstream behind the edge, the routes the gateway serves
there, the deployment the tests present tokens to, and nginx and Caddy run as processes
(``scripts/ensure-edges`` installs both; ``tests/support/fixtures/edge.py`` starts them)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import LiveGateway, wait_until

SCOPE = "orders:read"


#: the user's token: ``profile`` too, so that it names the user's address (RFC 9068 §6)
USER_SCOPES = f"{SCOPE} profile"


EMAIL = "alice@example.com"


ADMIN_HOST = "admin.local"


class EchoUpstream:
    """The upstream behind the edge: answers every request with JSON describing it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _echo(self) -> None:
                upstream.seen.append(self.path)
                body = json.dumps(
                    {"method": self.command, "path": self.path, "headers": self.headers.items()}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _echo

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def routes(upstream: str) -> str:
    return f"""
[proxy.assertion]
enabled = true

[[routes]]
path = "/orders"
methods = ["GET"]
upstream = "{upstream}"
scopes = ["{SCOPE}"]

[[routes]]
path = "/admin"
upstream = "{upstream}"
scopes = ["admin"]

[[routes]]
path = "/public"
public = true
upstream = "{upstream}"

# issue 15 §1: a host's route, and a host-less public one on the same path
[[routes]]
host = "{ADMIN_HOST}"
path = "/console"
upstream = "{upstream}"
scopes = ["admin"]

[[routes]]
path = "/console"
public = true
upstream = "{upstream}"

# issue 15 §7: a POST may stand for a DELETE here, which needs the DELETE route's scope
[[routes]]
path = "/reports"
methods = ["POST"]
upstream = "{upstream}"
scopes = ["{SCOPE}"]
allow_method_override = true

[[routes]]
path = "/reports"
methods = ["DELETE"]
upstream = "{upstream}"
scopes = ["admin"]
allow_method_override = true
"""


@dataclass
class Deployment:
    """The gateway, its upstream and the tokens the tests present."""

    gateway: LiveGateway
    upstream: EchoUpstream
    client: dict[str, Any]
    client_token: str
    user_token: str

    @property
    def client_auth(self) -> tuple[str, str]:
        return self.client["client_id"], self.client["client_secret"]

    def new_client_token(self) -> str:
        return token_for(self.gateway, self.client, grant_type="client_credentials")

    def edge_config(self, edge: str, listen: int) -> str:
        return self.gateway.cli(
            "edge-config", edge, "--upstream", self.upstream.url, "--listen", str(listen)
        )


def token_for(gateway: LiveGateway, client: dict[str, Any], **form: str) -> str:
    response = httpx.post(
        f"{gateway.base_url}/oauth/token",
        data={"scope": SCOPE, **form},
        auth=(client["client_id"], client["client_secret"]),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def edge_binary(name: str, *also: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=":".join(also))
    if found is None:
        message = f"{name} is not installed (scripts/ensure-edges installs Debian's package)"
        if os.environ.get("GATEWAY_REQUIRE_EDGES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running_process(
    command: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:

        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{command[0]} exited {process.returncode}:\n{log.read_text()}")
            return listening(port)

        wait_until(up, f"{command[0]} on port {port}")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


NGINX_MAIN = """\
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
{snippet}
}}
"""
