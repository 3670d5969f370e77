"""Real edges in front of a real gateway: Debian's nginx (``auth_request``) and Caddy
(``forward_auth``), configured by ``gateway edge-config``, an echo upstream behind them, all on
127.0.0.1. ``scripts/ensure-edges`` installs both (``make test``, ``.ci/run``); where they are
missing the tests skip, unless ``GATEWAY_REQUIRE_EDGES=1`` (CI) makes that a failure.
"""

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

from tests.databases import fresh_database_url
from tests.live.support import LiveGateway, free_port, running_gateway, wait_until

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
        return _token(self.gateway, self.client, grant_type="client_credentials")

    def edge_config(self, edge: str, listen: int) -> str:
        return self.gateway.cli(
            "edge-config", edge, "--upstream", self.upstream.url, "--listen", str(listen)
        )


def _token(gateway: LiveGateway, client: dict[str, Any], **form: str) -> str:
    response = httpx.post(
        f"{gateway.base_url}/oauth/token",
        data={"scope": SCOPE, **form},
        auth=(client["client_id"], client["client_secret"]),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("edge")
    upstream = EchoUpstream()
    port = free_port()
    try:
        for database_url in fresh_database_url(folder):
            with running_gateway(
                folder / "gateway",
                database_url,
                port=port,
                extra_toml=f"\n[server]\nport = {port}\n" + routes(upstream.url),
            ) as gateway:
                gateway.create_user(EMAIL)
                client = gateway.create_client(
                    "Edge test",
                    grant_types=("password", "client_credentials"),
                    scope=USER_SCOPES,
                )
                yield Deployment(
                    gateway,
                    upstream,
                    client,
                    client_token=_token(gateway, client, grant_type="client_credentials"),
                    user_token=_token(
                        gateway,
                        client,
                        grant_type="password",
                        scope=USER_SCOPES,
                        username=EMAIL,
                        password="correct horse battery staple",
                    ),
                )
    finally:
        upstream.close()


def _binary(name: str, *also: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=":".join(also))
    if found is None:
        message = f"{name} is not installed (scripts/ensure-edges installs Debian's package)"
        if os.environ.get("GATEWAY_REQUIRE_EDGES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _running(
    command: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:

        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{command[0]} exited {process.returncode}:\n{log.read_text()}")
            return _listening(port)

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


@pytest.fixture(scope="session")
def nginx(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's nginx with the gateway's snippet: its base URL."""
    binary = _binary("nginx", "/usr/sbin", "/usr/local/sbin")
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr
    if "--with-http_auth_request_module" not in built:
        pytest.fail(f"{binary} is built without auth_request:\n{built}")
    folder = tmp_path_factory.mktemp("nginx")
    port = free_port()
    snippet = deployment.edge_config("nginx", port).replace(
        f"listen {port};", f"listen 127.0.0.1:{port};"
    )
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(folder=folder, snippet=snippet))
    with _running([binary, "-p", str(folder), "-c", str(conf)], port, folder / "nginx.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def caddy(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Caddy with the gateway's snippet: its base URL."""
    binary = _binary("caddy")
    folder = tmp_path_factory.mktemp("caddy")
    port = free_port()
    # any Host reaches the site (a host in its address would make Caddy match on it)
    site = deployment.edge_config("caddy", port).replace(
        f":{port} {{", f"http://:{port} {{\n\tbind 127.0.0.1"
    )
    caddyfile = folder / "Caddyfile"
    caddyfile.write_text("{\n\tadmin off\n\tauto_https off\n}\n" + site)
    env = {
        **os.environ,
        "HOME": str(folder),
        "XDG_DATA_HOME": str(folder),
        "XDG_CONFIG_HOME": str(folder),
    }
    command = [binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    with _running(command, port, folder / "caddy.log", env):
        yield f"http://127.0.0.1:{port}"
