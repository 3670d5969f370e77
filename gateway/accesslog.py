"""The access log: one line per request on stderr, JSON (the default) or text.

Every request, proxied or answered by the gateway itself, gets one line once its response has
ended, made from its ``RequestContext`` (``gateway.context``), with exactly the keys of
``KEYS`` (an interface: log pipelines parse them), ``null`` where a value does not apply.
Nothing that could hold a credential is ever read into a line: no header but
``X-Request-Id``, no query, no body (the issuer's error bodies yield only their RFC 6749
``error`` code, a fixed word).

Cost: the proxy's hot path does no other logging, so the line is built by hand rather than
through ``logging``, and a request does as little as it can: its context and one clock read
(``write``). The lines are built together, away from each request's work (built one per
request, amid the rest of its work, they cost more end to end), once ``BATCH`` requests
wait or ``FLUSH_DELAY`` after the first of them (one timer per batch). A line is bytes made by
one ``%`` of a template (the numbers formatted in C, nothing to encode after), and what repeats
is not redone: the wall clock is read once per batch (each line's time is its request's end on
the monotonic clock, shifted), the timestamp's seconds once a second, and the escaped route,
method, client, subject, reason and logged path are remembered (``_Memo``, bounded).
``benchmarks/access_log.py`` measures what a line costs.

Writes: ``os.write`` on fd 2, of whole lines only. The processes of ``--workers N`` share
stderr: into a pipe or a socket, where another process's write could land inside a long one,
each write holds at most ``PIPE_BUF`` bytes (atomic for a pipe); a regular file or a terminal
takes each write whole, so a batch goes in one. ``close()`` (at shutdown) writes what is left
and makes later lines go out at once. A stalled stderr reader stalls the process, as with any
logging to stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import stat
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from gateway.context import RequestContext

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
BATCH = 32

#: bytes a logged path shows percent-encoded: all but visible ASCII, and '"' and '\'
_UNSAFE_PATH = re.compile(rb"[^\x21\x23-\x5b\x5d-\x7e]")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


def error_code(body: bytes) -> str | None:
    """The RFC 6749 §5.2 ``error`` of a JSON error body (a fixed word), if it has one."""
    if not body.startswith(b"{"):
        return None
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else None


class AccessLog:
    def __init__(self, format: str = "json", fd: int = 2) -> None:
        self.enabled = format != "off"
        text = format == "text"
        self._line = _text_line if text else _json_line
        #: a value as its line shows it (JSON, or the text format's), for values that repeat
        self._quote: _Memo = _Memo(_text if text else _json)
        self._paths: _Memo = _Memo(_logged_path_bytes)
        self._fd = fd
        #: the most one write may carry: whole lines up to ``PIPE_BUF`` into a pipe or socket
        #: (the one kind other processes' lines could split), a whole batch anywhere else
        self._chunk = PIPE_BUF if _shared_stream(fd) else 1 << 20
        #: finished requests whose lines are not built yet: when each ended, and its context
        self._pending: list[tuple[float, RequestContext]] = []
        #: the pending flush, and the loop it runs on
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._second = -1
        self._seconds_stamp = b""

    def write(self, context: RequestContext, ended: float | None = None) -> None:
        """Log one finished request (its line is built with the others of its batch);
        ``ended``: its end on ``time.perf_counter()``, if the caller has read it already."""
        if not self.enabled:
            return
        self._pending.append((time.perf_counter() if ended is None else ended, context))
        if self._closed or len(self._pending) >= BATCH:
            self.flush()
        elif self._timer is None or not self._timer_loop.is_running():  # type: ignore[union-attr]
            # a timer armed on a loop that has stopped would never run (tests run several
            # loops); asking for the loop only then spares a request a getpid() system call
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_DELAY, self._tick)
            self._timer_loop = loop

    def flush(self) -> None:
        """Write every pending line, whole (into a pipe or socket, at most ``PIPE_BUF`` bytes a
        write)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        # the wall clock of the monotonic one: read once for the batch
        offset = time.time() - time.perf_counter()
        line, quote, paths = self._line, self._quote, self._paths
        millisecond, stamp = -1, b""
        lines: list[bytes] = []
        size = 0
        for ended, context in pending:
            now = int((ended + offset) * 1000)
            if now != millisecond:
                millisecond, stamp = now, self._stamp(now)
            duration = (ended - context.started) * 1000
            data = line(
                stamp, quote[context.method], paths[context.raw_path], duration, context, quote
            )
            if lines and size + len(data) > self._chunk:
                self._write(b"".join(lines))
                lines, size = [], 0
            lines.append(data)
            size += len(data)
        self._write(b"".join(lines))

    def _stamp(self, millisecond: int) -> bytes:
        """RFC 3339 UTC, to the millisecond, of milliseconds since the epoch."""
        second, fraction = divmod(millisecond, 1000)
        if second != self._second:
            self._second = second
            self._seconds_stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return b"%s.%03dZ" % (self._seconds_stamp, fraction)

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


def _shared_stream(fd: int) -> bool:
    """Whether writes to ``fd`` from several processes may interleave within one write: a pipe
    or a socket (a regular file or a terminal takes each write whole)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return True
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


#: values a memo keeps, and the longest it keeps (a path can be 64 KiB)
MEMO_SIZE = 1024
MEMO_KEY = 256


class _Memo(dict[Any, bytes]):
    """``render(value)`` of values seen before, from a dict; what fills it is bounded (a
    client chooses the methods and paths it sends): past ``MEMO_SIZE`` values, or for one
    longer than ``MEMO_KEY``, each rendering is made anew."""

    def __init__(self, render: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._render = render

    def __missing__(self, value: Any) -> bytes:
        rendered = self._render(value)
        if len(self) < MEMO_SIZE and (value is None or len(value) <= MEMO_KEY):
            self[value] = rendered
        return rendered


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


def _logged_path_bytes(raw: bytes) -> bytes:
    return logged_path(raw).encode("ascii")


def _json(value: str | None) -> bytes:
    return b"null" if value is None else encode_basestring_ascii(value).encode("ascii")


def _request_id(context: RequestContext, quote: Callable[[str], str]) -> bytes:
    """The id: one of ours is hex; a received one is visible ASCII that may hold the characters
    a quoted string escapes."""
    rid = context.request_id
    return rid if rid.isalnum() else quote(rid.decode("ascii")).encode("ascii")


_JSON_LINE = (
    b'{"time":"%s","request_id":"%s","route":%s,"method":%s,"path":"%s","status":%d,'
    b'"duration_ms":%.3f,"upstream_status":%s,"upstream_ms":%s,"client_id":%s,"sub":%s,'
    b'"reason":%s,"bytes_in":%d,"bytes_out":%d}\n'
)


def _fields(
    stamp: bytes,
    method: bytes,
    path: bytes,
    duration: float,
    e: RequestContext,
    quote: _Memo,
    null: bytes,
    unquoted: Callable[[str], str],
) -> tuple[bytes | int | float, ...]:
    """A line's values in ``KEYS`` order, as a format renders them (``method`` comes quoted;
    ``path`` needs no escaping: logged_path leaves nothing JSON would escape)."""
    us, ums = e.upstream_status, e.upstream_ms
    return (
        stamp,
        _request_id(e, unquoted),
        quote[e.route],
        method,
        path,
        e.status,
        duration,
        null if us is None else b"%d" % us,
        null if ums is None else b"%.3f" % ums,
        quote[e.client_id],
        quote[e.sub],
        quote[e.reason],
        e.bytes_in,
        e.bytes_out,
    )


def _json_line(
    stamp: bytes, method: bytes, path: bytes, duration: float, e: RequestContext, quote: _Memo
) -> bytes:
    return _JSON_LINE % _fields(stamp, method, path, duration, e, quote, b"null", _unquoted_json)


def _unquoted_json(value: str) -> str:
    return encode_basestring_ascii(value)[1:-1]


def _text_value(value: str | None) -> str:
    """A text-line value: "-" for null, quoted (as JSON) unless it is plain visible ASCII."""
    if value is None:
        return "-"
    if value and value.isascii() and value.isprintable() and " " not in value and '"' not in value:
        return value
    return encode_basestring_ascii(value)


def _text(value: str | None) -> bytes:
    return _text_value(value).encode("ascii")


_TEXT_LINE = (
    b"%s %s %s %d %.3fms request_id=%s route=%s upstream_status=%s upstream_ms=%s"
    b" client_id=%s sub=%s reason=%s bytes_in=%d bytes_out=%d\n"
)


def _text_line(
    stamp: bytes, method: bytes, path: bytes, duration: float, e: RequestContext, quote: _Memo
) -> bytes:
    # the same values as JSON's, the request's method, path, status and time first
    f = _fields(stamp, method, path, duration, e, quote, b"-", _text_value)
    return _TEXT_LINE % (f[0], f[3], f[4], f[5], f[6], f[1], f[2], *f[7:])
