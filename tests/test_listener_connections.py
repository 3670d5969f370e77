"""The listener's connection limits against a real ``gateway serve``: ``max_connections`` per
process (503 at once past it), and a process with 256 file descriptors that 300 idle
connections neither crash nor starve (issue 15 §2); and every way of serving (``--workers N``,
``gateway demo``) listens through the same protocol."""

from __future__ import annotations

import contextlib
import re
import resource
import selectors
import socket
from pathlib import Path

import pytest

from gateway.errors import MissingOrRepeatedHost, TooManyConnections
from tests.support.databases import fresh_database_url
from tests.support.listener_client import (
    Answer,
    ask,
    assert_refusal,
    connect,
    head,
    parse_raw,
    read_answer,
    wait_for_close,
)
from tests.support.live import (
    START_TIMEOUT,
    LiveGateway,
    free_port,
    rotate,
    running_demo,
    running_gateway,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.live

#: idle connections stay open for the whole test
PATIENT = "head_timeout = 60.0\nkeep_alive_timeout = 60.0\n"
DESCRIPTORS = 256


def port_of(gateway: LiveGateway) -> int:
    return int(gateway.base_url.rsplit(":", 1)[1])


def get(sock: socket.socket, path: str) -> Answer:
    """A request on a kept-alive connection."""
    sock.sendall(head(path, "Host: gw.test"))
    return read_answer(sock)


def test_past_max_connections_a_new_connection_gets_503_at_once(
    tmp_path: Path, database_url: str
) -> None:
    toml = f"[server]\nmax_connections = 5\n{PATIENT}"
    with running_gateway(tmp_path / "gw", database_url, extra_toml=toml) as gateway:
        port = port_of(gateway)
        held = [connect(port) for _ in range(5)]
        try:
            assert get(held[0], "/healthz").status == 200  # the five are served
            with connect(port) as sixth:  # sends nothing: answered without waiting for it
                received, _ = wait_for_close(sixth)
            assert_refusal(parse_raw(received), 503, TooManyConnections.description)
            assert parse_raw(received).headers["retry-after"] == "1"
            held.pop().close()

            def served() -> bool:
                with connect(port) as sock:
                    sock.sendall(head("/healthz", "Host: gw.test", "Connection: close"))
                    return wait_for_close(sock)[0].startswith(b"HTTP/1.1 200 ")

            wait_until(served, "a connection served once one of the five closed")
        finally:
            for sock in held:
                sock.close()


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


def _answered(socks: list[socket.socket]) -> set[socket.socket]:
    """The sockets with something to read now (the server answered or closed them)."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        return {key.fileobj for key, _ in selector.select(timeout=0)}  # type: ignore[misc]


def test_300_idle_connections_and_256_descriptors(tmp_path: Path, database_url: str) -> None:
    """More idle connections than the process has descriptors: the ones past its capacity are
    answered 503 at once (logged once), the server stays up and serves the connections it
    holds, and its key reload, which opens files, still sees a rotated key."""
    directory = tmp_path / "gw"
    with contextlib.ExitStack() as stack:
        gateway = stack.enter_context(
            running_gateway(
                directory,
                database_url,
                extra_toml=f"[server]\n{PATIENT}",
                preexec_fn=_limit_descriptors,
            )
        )
        port = port_of(gateway)
        control = stack.enter_context(connect(port))
        assert get(control, "/healthz").status == 200
        idle = [stack.enter_context(connect(port)) for _ in range(300)]
        # accepted in order: once a later connection is refused, every earlier one is settled
        with connect(port) as probe:
            assert_refusal(parse_raw(wait_for_close(probe)[0]), 503, TooManyConnections.description)
        refused = _answered(idle)
        for sock in refused:
            assert_refusal(parse_raw(wait_for_close(sock)[0]), 503, TooManyConnections.description)
        held = len(idle) - len(refused)
        assert 100 < held < DESCRIPTORS - 64, held

        kid = rotate(gateway)

        def published() -> bool:
            keys = get(control, "/.well-known/jwks.json").json()["keys"]
            return kid in {key["kid"] for key in keys}

        wait_until(published, "the rotated key published while the connections are held")
        assert get(control, "/healthz").status == 200
        gateway.check_alive()
        for sock in idle:
            sock.close()
        wait_until(lambda: ask(port, head("/healthz", "Host: gw.test")).status == 200, "/healthz")
    log = gateway.server_log()
    assert "does not fit in the file descriptor limit" in log
    assert log.count("this process holds answered 503") == 1, log
    assert "Too many open files" not in log, log
    assert "key reload failed" not in log, log


def refuses_missing_host(port: int) -> None:
    assert_refusal(ask(port, head("/healthz")), 400, MissingOrRepeatedHost.description)


def test_every_worker_listens_through_the_gateway_s_protocol(
    tmp_path: Path, database_url: str
) -> None:
    args = ("--workers", "2")
    with running_gateway(tmp_path / "gw", database_url, serve_args=args) as gateway:
        for _ in range(4):  # new connections, spread over the workers by the kernel
            refuses_missing_host(port_of(gateway))


def test_the_demo_listens_through_the_gateway_s_protocol(tmp_path: Path) -> None:
    port, upstream_port = free_port(), free_port()
    with contextlib.contextmanager(fresh_database_url)(tmp_path) as database_url:
        issuer = f"http://127.0.0.1:{port}"
        config = write_config(tmp_path / "gateway.toml", issuer, database_url, tmp_path / "keys")
        log = tmp_path / "demo.log"
        with running_demo(config, port, upstream_port, log) as process:

            def started() -> bool:
                assert process.poll() is None, log.read_text()
                return re.search(r"^Gateway demo on ", log.read_text(), re.M) is not None

            wait_until(started, "the demo's walkthrough", timeout=START_TIMEOUT)
            refuses_missing_host(port)
