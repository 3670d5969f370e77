"""The access log: one line per request on stderr, JSON (the default) or text, and request ids.

Every request, proxied or answered by the gateway itself, gets one line once its response has
ended, with exactly the keys of ``KEYS`` (an interface: log pipelines parse them), ``null``
where a value does not apply. Nothing that could hold a credential is ever read into a line:
no header but ``X-Request-Id``, no query, no body (the issuer's error bodies yield only their
RFC 6749 ``error`` code, a fixed word).

Cost: the proxy's hot path does no other logging, so the line is built by hand (an f-string of
C-escaped strings, the timestamp's seconds formatted once a second) rather than through
``logging``. A request only appends its entry to a list; the lines are built together and
written with ``os.write`` on fd 2, in writes of whole lines of at most ``PIPE_BUF`` bytes, once
``BATCH`` requests wait or ``FLUSH_DELAY`` after the first of them (one timer per batch). A
write per request would cost a system call each, and lines built one per request, amid the
rest of its work, measured twice as dear end to end as the same lines built in a row. The
processes of ``--workers N`` share stderr, and writes up to ``PIPE_BUF`` to a pipe are atomic,
so lines never interleave. ``close()`` (at shutdown) writes what is left and makes later
lines go out at once. A stalled stderr reader stalls the process, as with any logging to
stderr.

Request ids (``X-Request-Id``): a value from a peer in ``[proxy] trusted_proxies`` is kept when
it is 1 to 128 visible ASCII characters; anything else (an untrusted peer, an invalid value,
the header sent twice) is replaced by a fresh one, 32 hex digits from ``os.urandom``. The id
is logged, returned to the client and forwarded upstream.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

#: the keys of a JSON line, in order
KEYS = (
    "time",
    "request_id",
    "route",
    "method",
    "path",
    "status",
    "duration_ms",
    "upstream_status",
    "upstream_ms",
    "client_id",
    "sub",
    "reason",
    "bytes_in",
    "bytes_out",
)
#: longest logged path, in characters; a longer one is cut and ends in "..."
PATH_CAP = 1024
#: writes up to this size to a pipe are atomic (POSIX requires at least 512; Linux: 4096)
PIPE_BUF = select.PIPE_BUF
#: seconds a line may wait for others to share its write, and how many may wait
FLUSH_DELAY = 0.01
BATCH = 16

REQUEST_ID = b"x-request-id"
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,128}")
#: bytes a logged path shows percent-encoded: all but visible ASCII, and '"' and '\'
_UNSAFE_PATH = re.compile(rb"[^\x21\x23-\x5b\x5d-\x7e]")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


def request_id(
    received: bytes | None,
    client: tuple[str, int] | None,
    is_trusted: Callable[[str | None], bool],
) -> bytes:
    """The request's id: ``received`` when valid and sent by a trusted peer (``client``: the
    ASGI scope's), else a new one."""
    if (
        received is not None
        and _VALID_ID.fullmatch(received)
        and is_trusted(client[0] if client else None)
    ):
        return received
    return os.urandom(16).hex().encode()


def received_id(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The ``X-Request-Id`` of raw ASGI headers; ``b""`` (invalid) when sent more than once."""
    values = [value for name, value in headers if name == REQUEST_ID]
    return values[0] if len(values) == 1 else b"" if values else None


def error_code(body: bytes) -> str | None:
    """The RFC 6749 §5.2 ``error`` of a JSON error body (a fixed word), if it has one."""
    if not body.startswith(b"{"):
        return None
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else None


class Entry:
    """What one request's line will say, filled in as the request goes."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "client_id",
        "reason",
        "request_id",
        "route",
        "started",
        "status",
        "sub",
        "upstream_ms",
        "upstream_status",
    )

    def __init__(self, request_id: bytes, started: float) -> None:
        self.request_id = request_id
        #: ``time.perf_counter()`` when the request arrived
        self.started = started
        self.route: str | None = None
        #: what the client got; uvicorn answers 500 to an app that fails before answering
        self.status = 500
        self.upstream_status: int | None = None
        self.upstream_ms: float | None = None
        self.client_id: str | None = None
        self.sub: str | None = None
        self.reason: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    def upstream_answered(self, status: int) -> None:
        """The upstream's response head is in."""
        self.status = self.upstream_status = status
        self.upstream_ms = (time.perf_counter() - self.started) * 1000


class AccessLog:
    def __init__(self, format: str = "json", fd: int = 2) -> None:
        self.enabled = format != "off"
        self._line = _text_line if format == "text" else _json_line
        self._fd = fd
        #: finished requests whose lines are not built yet: wall time, duration, method, path
        self._pending: list[tuple[float, float, str, bytes, Entry]] = []
        #: the pending flush, and the loop it runs on
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._second = -1
        self._stamp = ""

    def write(self, scope: dict[str, Any], entry: Entry) -> None:
        """Log one finished request (its line is built with the others of its batch)."""
        if not self.enabled:
            return
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        ended = time.perf_counter()
        self._pending.append(
            (time.time(), (ended - entry.started) * 1000, scope["method"], raw, entry)
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._closed or loop is None or len(self._pending) >= BATCH:
            self.flush()
        elif self._timer is None or self._timer_loop is not loop:
            self._timer = loop.call_later(FLUSH_DELAY, self._tick)
            self._timer_loop = loop

    def flush(self) -> None:
        """Write every pending line, whole, in writes of at most ``PIPE_BUF`` bytes."""
        pending, self._pending = self._pending, []
        batch: list[bytes] = []
        size = 0
        for now, duration, method, raw, entry in pending:
            second = int(now)
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            stamp = f"{self._stamp}.{int((now - second) * 1000):03d}Z"
            line = self._line(stamp, method, logged_path(raw), duration, entry).encode()
            if batch and size + len(line) > PIPE_BUF:
                self._write(b"".join(batch))
                batch, size = [], 0
            batch.append(line)
            size += len(line)
        if batch:
            self._write(b"".join(batch))

    def close(self) -> None:
        """Write what is pending; from now on, each line at once (the loop is ending)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def _tick(self) -> None:
        self._timer = None
        self.flush()

    def _write(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            pass  # stderr is gone (closed, a broken pipe): there is nowhere to log to


def logged_path(raw: bytes) -> str:
    """The path as logged: never the query, visible ASCII only, at most ``PATH_CAP`` long."""
    path = raw.partition(b"?")[0][: PATH_CAP + 1]
    if _UNSAFE_PATH.search(path):
        path = _UNSAFE_PATH.sub(lambda m: b"%%%02X" % m[0][0], path)
    text = path.decode("ascii")
    if len(text) > PATH_CAP:
        # cut, without leaving half of a %XX escape
        text = text[: PATH_CAP - 3]
        text = text[: text.rfind("%")] if "%" in text[-2:] else text
        text += "..."
    return text


def _json(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _number(value: int | float | None, null: str = "null") -> str:
    return null if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _json_line(stamp: str, method: str, path: str, duration: float, e: Entry) -> str:
    # the path needs no escaping: logged_path leaves nothing JSON would escape
    return (
        f'{{"time":"{stamp}","request_id":{_json(e.request_id.decode())},'
        f'"route":{_json(e.route)},"method":{_json(method)},"path":"{path}",'
        f'"status":{e.status},"duration_ms":{duration:.3f},'
        f'"upstream_status":{_number(e.upstream_status)},"upstream_ms":{_number(e.upstream_ms)},'
        f'"client_id":{_json(e.client_id)},"sub":{_json(e.sub)},"reason":{_json(e.reason)},'
        f'"bytes_in":{e.bytes_in},"bytes_out":{e.bytes_out}}}\n'
    )


def _text(value: str | None) -> str:
    """A text-line value: "-" for null, quoted (as JSON) unless it is plain visible ASCII."""
    if value is None:
        return "-"
    if value and value.isascii() and value.isprintable() and " " not in value and '"' not in value:
        return value
    return encode_basestring_ascii(value)


def _text_line(stamp: str, method: str, path: str, duration: float, e: Entry) -> str:
    return (
        f"{stamp} {_text(method)} {path} {e.status} {duration:.3f}ms"
        f" request_id={_text(e.request_id.decode())} route={_text(e.route)}"
        f" upstream_status={_number(e.upstream_status, '-')}"
        f" upstream_ms={_number(e.upstream_ms, '-')}"
        f" client_id={_text(e.client_id)} sub={_text(e.sub)} reason={_text(e.reason)}"
        f" bytes_in={e.bytes_in} bytes_out={e.bytes_out}\n"
    )
