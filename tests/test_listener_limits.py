"""The listener's limits and framing rules (issue 15 §2, §1's Host count, §7's transfer codings)
against a real ``gateway serve``, over raw sockets: a head bounded in bytes and fields (431),
in time (408, or a silent close when nothing came), idle kept-alive connections closed, one
``Host`` per request (RFC 9112 §3.2) and ``chunked`` as the only transfer coding (RFC 9112
§6.1) on every path; the request smuggling variants llhttp refuses stay refused."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.demo.echo import echo_upstream_thread
from gateway.errors import (
    MalformedRequest,
    MissingOrRepeatedHost,
    RequestHeadTimeout,
    RequestHeadTooLarge,
    TooManyHeaderFields,
    UnsupportedTransferCoding,
)
from tests.support.listener_client import (
    ask,
    assert_refusal,
    connect,
    head,
    parse_raw,
    read_answer,
    rss_kb,
    wait_for_close,
)
from tests.support.live import LiveGateway, running_gateway

pytestmark = pytest.mark.live

MAX_HEAD = 8192
HEAD_TIMEOUT = 3.0
IDLE_TIMEOUT = 0.5
#: how late a timer may close a connection on a loaded machine
LATE = 2.0
SERVER = f"""
[server]
max_request_head = {MAX_HEAD}
head_timeout = {HEAD_TIMEOUT}
keep_alive_timeout = {IDLE_TIMEOUT}
"""
HOST = "Host: gw.test"
CLOSE = "Connection: close"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, live_database_url: str
) -> Iterator[LiveGateway]:
    """A server of its own, with a small head bound, short timeouts and a route to an echo."""
    with echo_upstream_thread() as echo:
        route = f'[[routes]]\nname = "echo"\npath = "/echo"\nupstream = "{echo}"\npublic = true\n'
        directory = tmp_path_factory.mktemp("listener")
        with running_gateway(directory, live_database_url, extra_toml=SERVER + route) as gw:
            yield gw


@pytest.fixture
def port(gateway: LiveGateway) -> int:
    return int(gateway.base_url.rsplit(":", 1)[1])


def padded(size: int) -> bytes:
    """A GET /healthz head of exactly ``size`` bytes."""
    bare = head("/healthz", HOST, CLOSE, "X-Pad: ")
    return head("/healthz", HOST, CLOSE, "X-Pad: " + "a" * (size - len(bare)))


# --- the head in bytes and fields (431) ---------------------------------------------------


def test_a_head_of_max_request_head_bytes_is_served_one_more_is_431(port: int) -> None:
    assert len(padded(MAX_HEAD)) == MAX_HEAD
    assert ask(port, padded(MAX_HEAD)).status == 200
    refused = ask(port, padded(MAX_HEAD + 1))
    assert_refusal(refused, 431, RequestHeadTooLarge.description)


def test_a_200_mb_header_value_is_refused_without_being_held(gateway: LiveGateway) -> None:
    """The attack of issue 15 §2 (a 200 MB value added 200 MB): 431 once the bound is past,
    the connection closed, and the server's memory flat while the client keeps sending."""
    pid, port = gateway.process.pid, int(gateway.base_url.rsplit(":", 1)[1])
    before = peak = rss_kb(pid)
    sent = [0]
    with connect(port) as sock:

        def send() -> None:
            megabyte = b"a" * (1 << 20)
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw.test\r\nX-Big: ")
                for _ in range(200):
                    sock.sendall(megabyte)
                    sent[0] += len(megabyte)
            except OSError:
                pass  # the server closed the connection: what the test is about

        sock.settimeout(None)  # the sender blocks while the server reads
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            peak = max(peak, rss_kb(pid))
            if not select.select([sock], [], [], 0.05)[0]:
                continue
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        peak = max(peak, rss_kb(pid))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # the sender stops, if the server had not
        sender.join(10)
    assert received, "no answer within 15 s"
    assert_refusal(parse_raw(received), 431, RequestHeadTooLarge.description)
    assert sent[0] < 200 << 20  # the server stopped reading long before the value's end
    assert peak - before < 8 * 1024, f"RSS grew by {peak - before} kB"


def test_header_fields_past_max_header_fields_are_431(port: int) -> None:
    fields = [HOST, CLOSE] + [f"X-F{n}: 1" for n in range(98)]
    assert ask(port, head("/healthz", *fields)).status == 200  # 100 fields: the default bound
    refused = ask(port, head("/healthz", *fields, "X-One-Too-Many: 1"))
    assert_refusal(refused, 431, TooManyHeaderFields.description)


def test_a_chunked_body_s_trailer_section_is_bounded_like_a_head(port: int) -> None:
    request = head("/echo/up", HOST, CLOSE, "Transfer-Encoding: chunked", method="POST")
    small = ask(port, request + b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert small.status == 200 and small.json()["body_bytes"] == 3
    huge = request + b"3\r\nabc\r\n0\r\nX-Trailer: " + b"t" * (4 * MAX_HEAD) + b"\r\n\r\n"
    with connect(port) as sock:
        sock.sendall(huge)
        received, _ = wait_for_close(sock)
    assert_refusal(parse_raw(received), 431, RequestHeadTooLarge.description)


# --- the head in time (408), idle connections ----------------------------------------------


def test_a_head_sent_a_line_at_a_time_gets_408_at_head_timeout(port: int) -> None:
    """Slowloris: a header line every 0.2 s never finishes the head; at ``head_timeout`` after
    the connection opened, 408 and close."""
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw.test\r\n")
        closed = threading.Event()

        def drip() -> None:
            n = 0
            while not closed.wait(0.2):
                try:
                    sock.sendall(b"X-Drip-%d: 1\r\n" % n)
                except OSError:
                    return
                n += 1

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        received, _ = wait_for_close(sock, timeout=HEAD_TIMEOUT + LATE + 5)
        took = time.monotonic() - started
        closed.set()
        dripper.join(5)
    assert_refusal(parse_raw(received), 408, RequestHeadTimeout.description)
    assert HEAD_TIMEOUT - 0.1 <= took <= HEAD_TIMEOUT + LATE, took


def test_a_connection_that_sends_nothing_is_closed_silently(port: int) -> None:
    with connect(port) as sock:
        received, took = wait_for_close(sock)
    assert received == b""
    assert IDLE_TIMEOUT - 0.05 <= took <= IDLE_TIMEOUT + LATE, took


def test_a_head_begun_in_time_may_take_up_to_head_timeout(port: int) -> None:
    """The idle bound is on the first byte; then the whole head has ``head_timeout``. The
    next request's first byte is due within the idle bound again, not the head's."""
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(IDLE_TIMEOUT * 2)  # past the idle bound on purpose: the pause is the test
        sock.sendall(b"Host: gw.test\r\n\r\n")
        assert read_answer(sock).status == 200
        received, took = wait_for_close(sock)
    assert received == b""
    assert took <= IDLE_TIMEOUT + 1.0 < HEAD_TIMEOUT - IDLE_TIMEOUT * 2, took


def test_a_kept_alive_connection_is_closed_once_idle(port: int) -> None:
    with connect(port) as sock:
        for _ in range(2):  # kept alive across requests sent in time
            sock.sendall(head("/healthz", HOST))
            assert read_answer(sock).status == 200
        # a response that takes longer than the idle timeout: the bound counts from its end
        sock.sendall(head(f"/echo/events?count=2&interval={IDLE_TIMEOUT * 2}", HOST))
        assert read_answer(sock).status == 200
        received, took = wait_for_close(sock)
    assert received == b""
    assert IDLE_TIMEOUT - 0.05 <= took <= IDLE_TIMEOUT + LATE, took


def test_pipelined_requests_are_all_answered(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(head("/healthz", HOST) * 2 + head("/healthz", HOST, CLOSE))
        received, _ = wait_for_close(sock)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3


# --- RFC 9112 §3.2: one Host, on every path ------------------------------------------------

PATHS = ("/echo/x", "/oauth/token", "/decisions", "/healthz")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("version", "hosts"),
    [
        pytest.param("1.1", (), id="http/1.1-without-host"),
        pytest.param("1.1", (HOST, HOST), id="http/1.1-two-hosts"),
        pytest.param("1.1", (HOST, "Host: other.test"), id="http/1.1-two-different-hosts"),
        pytest.param("1.0", (HOST, HOST), id="http/1.0-two-hosts"),
    ],
)
def test_a_request_without_one_host_is_400(
    port: int, path: str, version: str, hosts: tuple[str, ...]
) -> None:
    refused = ask(port, head(path, *hosts, CLOSE, version=version))
    assert_refusal(refused, 400, MissingOrRepeatedHost.description)


@pytest.mark.parametrize("path", PATHS)
def test_an_http_1_0_request_without_host_is_allowed(port: int, path: str) -> None:
    answer = ask(port, head(path, version="1.0"))
    assert answer.status != 400, answer
    if path in ("/echo/x", "/healthz"):
        assert answer.status == 200


# --- RFC 9112 §6.1: chunked, once, is the only transfer coding ------------------------------


@pytest.mark.parametrize(
    "codings",
    [
        pytest.param(("gzip, chunked",), id="gzip-chunked"),
        pytest.param(("chunked, chunked",), id="chunked-twice"),
        pytest.param(("chunked", "chunked"), id="two-fields"),
        pytest.param(("gzip", "chunked"), id="gzip-then-chunked-fields"),
        pytest.param(("identity",), id="identity"),
        pytest.param(("gzip",), id="gzip"),
        pytest.param(("chunked;x=1",), id="parameter"),
        pytest.param((", chunked",), id="empty-element"),
    ],
)
@pytest.mark.parametrize("path", ("/echo/up", "/oauth/token"))
def test_a_transfer_coding_other_than_chunked_is_501(
    port: int, path: str, codings: tuple[str, ...]
) -> None:
    fields = [f"Transfer-Encoding: {coding}" for coding in codings]
    request = head(path, HOST, CLOSE, *fields, method="POST") + b"3\r\nabc\r\n0\r\n\r\n"
    assert_refusal(ask(port, request), 501, UnsupportedTransferCoding.description)


@pytest.mark.parametrize("coding", ["chunked", "Chunked"])
def test_a_chunked_upload_streams_through_the_proxy(port: int, coding: str) -> None:
    with connect(port) as sock:
        request = head("/echo/up", HOST, CLOSE, f"Transfer-Encoding: {coding}", method="POST")
        sock.sendall(request)
        for piece in (b"a" * 1000, b"b" * 70000, b"c"):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        answer = read_answer(sock)
    assert answer.status == 200 and answer.json()["body_bytes"] == 71001


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST /echo/up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="content-length-then-transfer-encoding",
        ),
        pytest.param(
            b"POST /echo/up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n0\r\n\r\n",
            id="transfer-encoding-then-content-length",
        ),
        pytest.param(
            b"POST /echo/up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n"
            b"Content-Length: 3\r\n\r\nabc",
            id="duplicate-content-length",
        ),
        pytest.param(
            b"GET /echo/up HTTP/1.1\r\nHost: gw.test\r\nX-A: a\r\n b\r\n\r\n", id="obs-fold"
        ),
        pytest.param(b"GET /echo/up HTTP/1.1\nHost: gw.test\n\n", id="bare-lf"),
        pytest.param(b"GET /echo/up HTTP/1.1\r\nHost: gw.test\r\n X-A: a\r\n\r\n", id="space"),
    ],
)
def test_request_smuggling_variants_stay_refused(port: int, request_bytes: bytes) -> None:
    assert_refusal(ask(port, request_bytes), 400, MalformedRequest.description)


def test_a_refusal_reflects_nothing_of_the_request(port: int) -> None:
    marker = "zq8Marker"
    for request in (
        head(f"/echo/{marker}", f"X-{marker}: {marker}", f"Transfer-Encoding: {marker}"),
        head(f"/{marker}", HOST, f"Host: {marker}"),
        head(f"/{marker}", HOST, f"X-{marker}: " + marker * MAX_HEAD),
        f"GET /{marker} HTTP/1.1\r\nHost: {marker}\n\n".encode(),
    ):
        with connect(port) as sock:
            sock.sendall(request)
            received, _ = wait_for_close(sock)
        assert received.startswith(b"HTTP/1.1 4") or received.startswith(b"HTTP/1.1 5")
        assert marker.encode() not in received


# --- what the listener closes: counted, logged at most once a minute -----------------------


def closes(gateway: LiveGateway) -> dict[str, float]:
    text = httpx.get(f"{gateway.base_url}/metrics").text
    found = re.findall(r'^gateway_listener_closes_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def test_refusals_are_counted_and_logged_at_most_once_a_minute(
    gateway: LiveGateway, port: int
) -> None:
    before = closes(gateway)
    for _ in range(20):
        assert ask(port, head("/healthz", CLOSE)).status == 400
    after = closes(gateway)
    assert after["missing_or_repeated_host"] - before["missing_or_repeated_host"] == 20
    log = gateway.server_log()
    assert log.count(MissingOrRepeatedHost.description) == 1, log
    assert "Invalid HTTP request received" not in log  # uvicorn's line per request is gone
    with connect(port) as sock:
        wait_for_close(sock)
    assert closes(gateway)["idle"] > after["idle"]
