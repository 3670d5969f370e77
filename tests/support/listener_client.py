"""A raw-socket client for the listener's tests: requests written byte for byte (no client
normalises a head that is wrong on purpose), answers parsed by ``http.client``, and the
server's resident memory read from ``/proc``."""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: what the listener sends with every refusal
REFUSAL_HEADERS = {
    "content-type": "application/json",
    "cache-control": "no-store",
    "connection": "close",
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    """One response from ``sock`` (its length from its framing, or the connection's end)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Answer(response.status, headers, body)


def ask(port: int, data: bytes) -> Answer:
    """Send ``data`` on a new connection and read one answer."""
    with connect(port) as sock:
        sock.sendall(data)
        return read_answer(sock)


def head(target: str, *fields: str, method: str = "GET", version: str = "1.1") -> bytes:
    """A request head as written: ``fields`` are whole lines (``"Host: gw.test"``)."""
    lines = [f"{method} {target} HTTP/{version}", *fields, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def wait_for_close(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, float]:
    """Read until the server closes ``sock``: what it sent, and the seconds it took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # the server closed with our bytes unread: what it sent before still counts
    return received, time.monotonic() - started


def parse_raw(data: bytes) -> Answer:
    """The first response in ``data`` (a refusal: its body runs to the end)."""
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def rss_kb(pid: int) -> int:
    """The resident set size of process ``pid``, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def assert_refusal(answer: Answer, status: int, description: str) -> None:
    """The listener's refusal: JSON in the project's shape, a fixed description, closed."""
    assert answer.status == status, answer
    for name, value in REFUSAL_HEADERS.items():
        assert answer.headers.get(name) == value, (name, answer.headers)
    assert "date" in answer.headers
    expected_error = "temporarily_unavailable" if status == 503 else "invalid_request"
    assert answer.json() == {"error": expected_error, "error_description": description}
