"""The access log's parts: the logged path, error codes, the buffer and its writes, the
``[logging]`` config; and the lines of the gateway's own endpoints (issuer, health, metrics)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.accesslog import (
    BATCH,
    MEMO_KEY,
    MEMO_SIZE,
    PATH_CAP,
    PIPE_BUF,
    AccessLog,
    error_code,
    logged_path,
)
from gateway.app import GatewayApp, create_app
from gateway.config import Config, RouteConfig, load_config
from gateway.context import RequestContext, request_id
from gateway.errors import ConfigError
from tests.support.accesslog import LogPipe, assert_shape
from tests.support.app import ISSUER, PASSWORD, Registered

# --- the path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        pytest.param(b"/orders/7", "/orders/7", id="plain"),
        pytest.param(b"/orders/7?token=secret", "/orders/7", id="query-never"),
        pytest.param(b"/a%20b/%2e", "/a%20b/%2e", id="encoded-as-sent"),
        pytest.param(b"/a b\t\n\x00\x7f", "/a%20b%09%0A%00%7F", id="controls-and-space"),
        pytest.param(b'/"quoted"\\', "/%22quoted%22%5C", id="json-specials"),
        pytest.param("/café".encode(), "/caf%C3%A9", id="utf-8"),
        pytest.param(b"/\xff\xfe", "/%FF%FE", id="not-utf-8"),
        pytest.param(b"/" + b"a" * (PATH_CAP - 1), "/" + "a" * (PATH_CAP - 1), id="at-the-cap"),
        pytest.param(b"/" + b"a" * 65536, "/" + "a" * (PATH_CAP - 4) + "...", id="over-the-cap"),
        pytest.param(
            b"/" + b"a" * (PATH_CAP - 6) + b"\xff" * 10,
            "/" + "a" * (PATH_CAP - 6) + "...",
            id="cut-before-an-escape",
        ),
    ],
)
def test_the_logged_path_is_visible_ascii_without_query_and_capped(raw: bytes, logged: str) -> None:
    path = logged_path(raw)
    assert path == logged
    assert len(path) <= PATH_CAP
    assert json.loads(json.dumps(path)) == path and '"' not in path and "\\" not in path


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b'{"error": "invalid_client"}', "invalid_client", id="rfc6749"),
        pytest.param(b'{"error": "Invalid Client!"}', None, id="not-a-code"),
        pytest.param(b'{"error": 5}', None, id="not-a-string"),
        pytest.param(b"[1]", None, id="not-an-object"),
        pytest.param(b"{nope", None, id="not-json"),
        pytest.param(b"<html>", None, id="html"),
    ],
)
def test_only_an_error_code_is_taken_from_a_body(body: bytes, code: str | None) -> None:
    assert error_code(body) == code


# --- the buffer --------------------------------------------------------------------------

SCOPE = {"type": "http", "method": "GET", "path": "/x", "raw_path": b"/x"}


def entry(n: int) -> RequestContext:
    logged = RequestContext(SCOPE, f"id-{n:04d}".encode(), lambda _: True)
    logged.route = "r" * 200  # a few hundred bytes a line: many lines exceed PIPE_BUF
    return logged


async def test_lines_wait_for_company_but_not_long() -> None:
    pipe = LogPipe()
    try:
        pipe.log.write(entry(0))
        await asyncio.sleep(0)
        assert not pipe.readable()  # buffered, for the lines of other requests to join
        assert (await asyncio.to_thread(pipe.entries, 1))[0]["request_id"] == "id-0000"
    finally:
        pipe.close()


async def test_a_full_batch_is_written_at_once_in_whole_lines() -> None:
    pipe = LogPipe()
    try:
        count = 4 * PIPE_BUF // 300
        for n in range(count):
            pipe.log.write(entry(n))
        assert pipe.readable()  # full batches went out without waiting for the timer
        entries = await asyncio.to_thread(pipe.entries, count)
    finally:
        pipe.close()
    assert [e["request_id"] for e in entries] == [f"id-{n:04d}" for n in range(count)]
    for logged in entries:
        assert_shape(logged)


async def test_close_writes_what_is_buffered_and_later_lines_at_once() -> None:
    pipe = LogPipe()
    try:
        pipe.log.write(entry(1))
        pipe.log.close()
        assert pipe.entries(1)[0]["request_id"] == "id-0001"
        pipe.log.write(entry(2))
        assert pipe.readable()  # at once, on this iteration
        assert pipe.entries(2)[1]["request_id"] == "id-0002"
    finally:
        pipe.close()


def test_what_a_line_remembers_is_bounded_and_never_changes_a_line(tmp_path: Path) -> None:
    """Escaped values and logged paths are remembered, at most ``MEMO_SIZE`` of each and none
    longer than ``MEMO_KEY``: a client choosing methods and paths cannot grow the process; a
    value past the bound is rendered anew, the same as if it had been remembered."""
    count = MEMO_SIZE + 50
    with (tmp_path / "log").open("wb") as file:  # a file: a pipe would fill before a reader
        log = AccessLog("json", fd=file.fileno())
        for n in range(count):
            raw = f"/p/{n}".encode() if n % 2 else b"/" + b"x" * (MEMO_KEY + n % 500)
            scope = {**SCOPE, "method": f"M{n}", "raw_path": raw}
            logged = RequestContext(scope, f"id-{n}".encode(), lambda _: True)
            logged.route, logged.sub = f'r"{n}', f"sub-{n % 3}"
            log.write(logged)
        log.flush()
    entries = [json.loads(line) for line in (tmp_path / "log").read_bytes().splitlines()]
    assert len(log._quote) <= MEMO_SIZE and len(log._paths) <= MEMO_SIZE
    assert all(len(path) <= MEMO_KEY for path in log._paths)
    assert len(entries) == count
    for n, logged in enumerate(entries):
        assert logged["method"] == f"M{n}" and logged["route"] == f'r"{n}'
        assert logged["sub"] == f"sub-{n % 3}"
        assert logged["path"] == (f"/p/{n}" if n % 2 else "/" + "x" * (MEMO_KEY + n % 500))


def test_each_line_has_the_wall_clock_time_of_its_end() -> None:
    pipe = LogPipe()
    try:
        before = time.time()
        pipe.log.write(entry(0))
        pipe.log.flush()
        after = time.time()
        stamp = pipe.entries(1)[0]["time"]
    finally:
        pipe.close()
    logged = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    assert before - 0.002 <= logged <= after + 0.002


def test_fresh_request_ids_are_unique_and_a_forked_child_makes_its_own() -> None:
    untrusted = "203.0.113.9"
    ids = [request_id(None, untrusted, lambda _: False) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what its parent had read ahead must not be handed out again
        os.write(write, b"".join(request_id(None, untrusted, lambda _: False) for _ in range(64)))
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64 * 32)
    os.close(read)
    parent = b"".join(request_id(None, untrusted, lambda _: False) for _ in range(64))
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    assert len(child_ids) == 64
    assert not child_ids & {parent[i : i + 32] for i in range(0, len(parent), 32)}


async def test_only_a_pipe_or_socket_has_its_writes_cut_at_pipe_buf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's write can land inside a long write to a pipe or socket, never inside
    one to a regular file: a batch goes to a file in one write."""
    sizes: list[int] = []
    real_write = os.write

    def counted(fd: int, data: bytes) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counted)
    left, right = socket.socketpair()
    with left, right, (tmp_path / "log").open("wb") as file:
        for fd, cut in ((file.fileno(), False), (left.fileno(), True)):
            sizes.clear()
            log = AccessLog("json", fd=fd)
            for n in range(BATCH):
                log.write(entry(n))  # ~300-byte lines: a batch is over PIPE_BUF
            assert sum(sizes) > PIPE_BUF
            assert (max(sizes) <= PIPE_BUF and len(sizes) > 1) if cut else len(sizes) == 1


def test_off_writes_nothing(tmp_path: Path) -> None:
    with (tmp_path / "log").open("wb") as file:
        log = AccessLog("off", fd=file.fileno())
        log.write(entry(1))
        log.flush()
    assert (tmp_path / "log").read_bytes() == b""


# --- config ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["json", "text", "off"])
def test_logging_formats(tmp_path: Path, value: str) -> None:
    (tmp_path / "gateway.toml").write_text(f'[logging]\nformat = "{value}"\n')
    assert load_config(tmp_path / "gateway.toml").logging.format == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param('format = "xml"', 'must be "json", "text" or "off"', id="unknown"),
        pytest.param("format = 1", "must be a string", id="not-a-string"),
        pytest.param('level = "debug"', "unknown key", id="unknown-key"),
    ],
)
def test_logging_config_errors_name_the_key(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "gateway.toml").write_text(f"[logging]\n{text}\n")
    with pytest.raises(ConfigError, match=rf"gateway.toml: logging\.\w+: {problem}"):
        load_config(tmp_path / "gateway.toml")


# --- the gateway's own endpoints ---------------------------------------------------------


@pytest.fixture
def logged_client(app: GatewayApp, access_log: LogPipe) -> Any:
    app.access_log = app.proxy.access_log = access_log.log
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        yield client


def test_a_token_request_is_logged_without_its_secrets(
    logged_client: TestClient, access_log: LogPipe, confidential: Registered
) -> None:
    form = {
        "grant_type": "password",
        "username": "nobody@example.com",
        "password": PASSWORD,
        "scope": "orders:read",
    }
    denied = logged_client.post("/oauth/token", data=form, auth=confidential.auth)
    assert denied.status_code == 400
    granted = logged_client.post(
        "/oauth/token?client_secret=q-secret",
        data={"grant_type": "client_credentials"},
        auth=confidential.auth,
    )
    assert granted.status_code == 200
    bad_client = logged_client.post("/oauth/token", data=form, auth=("nobody", "wrong-secret"))
    assert bad_client.status_code == 401
    lines = access_log.lines(3)
    for secret in (
        PASSWORD,
        confidential.client_secret,
        granted.json()["access_token"],
        "q-secret",
        "wrong-secret",
    ):
        assert secret is not None and secret.encode() not in b"".join(lines)
    entries = [json.loads(line) for line in lines]
    for logged, response in zip(entries, (denied, granted, bad_client), strict=True):
        assert_shape(logged)
        assert logged["request_id"] == response.headers["x-request-id"]
        assert logged["bytes_out"] == len(response.content)
        assert logged["duration_ms"] > 0
    assert [(e["route"], e["method"], e["path"], e["status"], e["reason"]) for e in entries] == [
        ("/oauth/token", "POST", "/oauth/token", 400, "invalid_grant"),
        ("/oauth/token", "POST", "/oauth/token", 200, None),
        ("/oauth/token", "POST", "/oauth/token", 401, "invalid_client"),
    ]
    assert entries[1]["bytes_in"] == len("grant_type=client_credentials")
    for logged in entries:
        assert (logged["upstream_status"], logged["upstream_ms"]) == (None, None)
        assert (logged["client_id"], logged["sub"]) == (None, None)


@pytest.mark.parametrize(
    ("path", "status", "route", "reason"),
    [
        pytest.param("/healthz", 200, "/healthz", None, id="healthz"),
        pytest.param("/metrics", 200, "/metrics", None, id="metrics"),
        pytest.param("/.well-known/jwks.json", 200, "/.well-known/jwks.json", None, id="jwks"),
        pytest.param("/oauth/nothing-here", 404, None, "not_found", id="unknown-endpoint"),
        pytest.param(
            "/.well-known/oauth-protected-resource/none",
            404,
            "/.well-known/oauth-protected-resource",
            "not_found",
            id="resource-metadata",
        ),
    ],
)
def test_the_gateways_own_endpoints_are_logged(
    logged_client: TestClient,
    access_log: LogPipe,
    path: str,
    status: int,
    route: str | None,
    reason: str | None,
) -> None:
    response = logged_client.get(path + "?x=q-secret", headers={"X-Request-Id": "from-a-client"})
    assert response.status_code == status
    logged = access_log.entry()
    assert_shape(logged)
    assert (logged["route"], logged["path"], logged["status"], logged["reason"]) == (
        route,
        path,
        status,
        reason,
    )
    # the test client's peer is not a trusted proxy: its id is replaced
    assert logged["request_id"] == response.headers["x-request-id"] != "from-a-client"


def test_a_decision_is_logged_and_answered_without_a_date(
    app: GatewayApp, access_log: LogPipe
) -> None:
    app.access_log = app.proxy.access_log = access_log.log
    asks = {"X-Original-Method": "GET", "X-Original-URI": "/nowhere?token=q-secret"}
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 4000)) as edge:  # trusted
        response = edge.get("/decisions", headers=asks)
    assert response.status_code == 403  # no route: every denial is 401 or 403 for an edge
    assert "date" not in response.headers
    logged = access_log.entry()
    assert_shape(logged)
    assert (logged["route"], logged["path"], logged["status"], logged["reason"]) == (
        "/decisions",
        "/decisions",
        403,
        "not_found",
    )
    assert logged["request_id"] == response.headers["x-request-id"]


def test_a_decision_names_whose_token_it_was_and_why_it_refused(
    config: Config, access_log: LogPipe, confidential: Registered
) -> None:
    route = RouteConfig(
        path="/orders", upstream="http://127.0.0.1:9", name="orders", scopes=(("orders:read",),)
    )
    app = create_app(dataclasses.replace(config, routes=(route,)))
    app.access_log = app.proxy.access_log = access_log.log
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 4000)) as edge:  # trusted
        answers = []
        for scope in ("orders:read", "orders:write"):
            form = {"grant_type": "client_credentials", "scope": scope}
            token = edge.post("/oauth/token", data=form, auth=confidential.auth).json()
            asks = {
                "X-Original-Method": "GET",
                "X-Original-URI": "/orders/7",
                "Authorization": f"Bearer {token['access_token']}",
            }
            answers.append(edge.get("/decisions", headers=asks).status_code)
        expired = edge.get(
            "/decisions",
            headers={"X-Original-Method": "GET", "X-Original-URI": "/orders/7",
                     "Authorization": "Bearer " + "e30.e30.sig"},
        )  # fmt: skip
    assert answers == [200, 403] and expired.status_code == 401
    _, allowed, _, refused, unreadable = access_log.entries(5)
    for logged in (allowed, refused):
        assert (logged["client_id"], logged["sub"]) == (confidential.client_id,) * 2
    assert (allowed["status"], allowed["reason"]) == (200, None)
    assert (refused["status"], refused["reason"]) == (403, "insufficient_scope")
    # the proxy's own word for it, not only the RFC 6750 code of the body
    assert (unreadable["status"], unreadable["reason"], unreadable["sub"]) == (
        401,
        "malformed_token",
        None,
    )
