"""Helpers for the live tests: a real ``gateway serve`` process, its CLI, and what clients need
around it (bounded polls, the login and consent forms parsed from HTML, a redirect target)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

T = TypeVar("T")

PASSWORD = "correct horse battery staple"
START_TIMEOUT = 20.0
CLI_TIMEOUT = 30.0


def wait_until(condition: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml_string(value: str) -> str:
    # a JSON string is a valid TOML basic string for everything json.dumps emits
    return json.dumps(value)


def _table(name: str, values: dict[str, Any]) -> str:
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
    return f"\n[{name}]\n{lines}"


def write_config(
    path: Path,
    issuer: str,
    database_url: str,
    keys_dir: Path,
    *,
    revocation: dict[str, Any] | None = None,
    extra_toml: str = "",
    **keys: Any,
) -> Path:
    """A config with fast key reloads and revocation syncs; ``keys`` and ``revocation`` add
    to (or override) those tables, ``extra_toml`` appends more (e.g. ``[[routes]]``)."""
    path.write_text(
        f"issuer = {_toml_string(issuer)}\n"
        + _table("database", {"url": database_url})
        + _table("keys", {"dir": str(keys_dir), "reload_interval": 0.2, **keys})
        + _table("revocation", {"sync_interval": 0.2, **(revocation or {})})
        + extra_toml
    )
    return path


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(config: Path, *args: str, stdin: str | None = None, status: int = 0) -> str:
    """``python -m gateway --config CONFIG ARGS...``: its stdout, or its stderr when it is
    expected to fail with ``status``; any other exit status fails the test."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_cli_env(),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if done.returncode != status:
        pytest.fail(
            f"gateway {' '.join(args)} exited {done.returncode}, not {status}:\n"
            f"{done.stdout}{done.stderr}"
        )
    return done.stdout if status == 0 else done.stderr


@dataclass
class LiveGateway:
    """A running ``gateway serve`` process and the config file it (and its CLI) reads."""

    base_url: str
    issuer: str
    config: Path
    directory: Path
    keys_dir: Path
    database_url: str
    process: subprocess.Popen[bytes]
    log: Path
    users: list[str] = field(default_factory=list)

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")

    def cli(
        self, *args: str, stdin: str | None = None, config: Path | None = None, status: int = 0
    ) -> str:
        return run_cli(config or self.config, *args, stdin=stdin, status=status)

    def write_config(self, name: str, **keys: Any) -> Path:
        """Another config file for this server's database and keys, e.g. for the CLI."""
        return write_config(
            self.directory / name, self.issuer, self.database_url, self.keys_dir, **keys
        )

    def create_user(self, email: str, password: str = PASSWORD) -> str:
        args = ("user", "create", "--email", email, "--password-stdin", "--json")
        return str(json.loads(self.cli(*args, stdin=password + "\n"))["email"])

    def create_client(
        self,
        name: str,
        *,
        grant_types: tuple[str, ...],
        scope: str = "",
        redirect_uris: tuple[str, ...] = (),
        public: bool = False,
        introspect: bool = False,
        post_logout_redirect_uris: tuple[str, ...] = (),
        first_party: bool = False,
    ) -> dict[str, Any]:
        args = ["client", "create", "--name", name, "--scope", scope, "--json"]
        for uri in post_logout_redirect_uris:
            args += ["--post-logout-redirect-uri", uri]
        if first_party:
            args.append("--first-party")
        for grant in grant_types:
            args += ["--grant-type", grant]
        for uri in redirect_uris:
            args += ["--redirect-uri", uri]
        if public:
            args.append("--public")
        if introspect:
            args.append("--introspect")
        created: dict[str, Any] = json.loads(self.cli(*args))
        return {**created, "name": name}

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 §3: the metadata document, the clients' source of truth."""
        response = httpx.get(f"{self.base_url}/.well-known/oauth-authorization-server")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def jwks_kids(self) -> set[str]:
        response = httpx.get(self.metadata()["jwks_uri"])
        response.raise_for_status()
        return {key["kid"] for key in response.json()["keys"]}

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"gateway serve exited with {code}:\n{self.server_log()}")


def _healthy(gateway: LiveGateway) -> bool:
    gateway.check_alive()
    try:
        return httpx.get(f"{gateway.base_url}/healthz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def running_gateway(
    directory: Path,
    database_url: str,
    *,
    issuer: str | None = None,
    keys_dir: Path | None = None,
    revocation: dict[str, Any] | None = None,
    extra_toml: str = "",
    serve_args: tuple[str, ...] = (),
    port: int | None = None,
    preexec_fn: Callable[[], None] | None = None,
    **keys: Any,
) -> Iterator[LiveGateway]:
    """Start ``gateway serve`` on a free loopback port; stop it (and check it lived) after.

    Replicas of one deployment share ``issuer``, ``keys_dir`` and the database;
    ``preexec_fn`` runs in the server's process before it starts (e.g. to lower a limit)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    issuer = issuer or base_url
    keys_dir = keys_dir or directory / "keys"
    keys = {"activation_delay": 0, **keys}  # a rotated key signs at once
    config = write_config(
        directory / "gateway.toml",
        issuer,
        database_url,
        keys_dir,
        revocation=revocation,
        extra_toml=extra_toml,
        **keys,
    )
    log = directory / "serve.log"
    command = [sys.executable, "-m", "gateway", "--config", str(config), "serve", *serve_args]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_cli_env(),
            preexec_fn=preexec_fn,
        )
    gateway = LiveGateway(base_url, issuer, config, directory, keys_dir, database_url, process, log)
    try:
        wait_until(lambda: _healthy(gateway), f"{base_url}/healthz", timeout=START_TIMEOUT)
        yield gateway
        gateway.check_alive()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"gateway serve ignored SIGTERM:\n{gateway.server_log()}")
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete
    if process.returncode not in (0, -signal.SIGTERM):
        pytest.fail(f"gateway serve exited with {process.returncode}:\n{gateway.server_log()}")


@contextlib.contextmanager
def running_demo(
    config: Path, port: int, upstream_port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``gateway demo`` (what ``make run`` starts) on ``port``, its upstream and browser client
    on ``upstream_port``, its output in ``log``; stopped after."""
    command = [sys.executable, "-m", "gateway", "--config", str(config), "demo"]
    command += ["--port", str(port), "--upstream-port", str(upstream_port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=_cli_env()
        )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


# --- the authorization pages, as a browser would read them -----------------------------------


@dataclass
class Form:
    action: str
    method: str
    hidden: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class PageParser(HTMLParser):
    """The forms of a page (hidden fields, input names, submit buttons) and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms:
            if a.get("type") == "hidden":
                self.forms[-1].hidden[a["name"]] = a.get("value", "")
            elif "name" in a:
                self.forms[-1].inputs.append(a["name"])
        elif tag == "button" and self.forms and a.get("type", "submit") == "submit":
            self.forms[-1].buttons.append((a.get("name", ""), a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(" ".join(data.split()))


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def query_of(url: str) -> dict[str, str]:
    """The query parameters of ``url``; each must appear once (RFC 6749 §3.1)."""
    params = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in params.values()), url
    return {k: v[0] for k, v in params.items()}


# --- the client's redirect URI ---------------------------------------------------------------


class RedirectTarget:
    """A tiny HTTP server on 127.0.0.1 standing in for the client's redirect URI."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.requests.append(self.path)
                found = urlsplit(self.path).path == "/callback"
                body = b"<!doctype html><title>client</title><p>back at the client</p>"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.redirect_uri = f"http://127.0.0.1:{port}/callback"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RedirectTarget:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def callbacks(self) -> list[dict[str, str]]:
        return [query_of(p) for p in self.requests if urlsplit(p).path == "/callback"]


def rotate(gateway: LiveGateway, **cli: Any) -> str:
    out = gateway.cli("key", "rotate", **cli)
    match = re.match(r"published key (\S+) ", out)
    assert match, out
    return match.group(1)
