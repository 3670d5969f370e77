"""Reading access-log lines as the gateway writes them: through a real pipe (its fd 2 in
production), waiting for the bytes to arrive rather than for a fixed time."""

from __future__ import annotations

import json
import os
import select
import time
from typing import Any

import pytest

from gateway.accesslog import KEYS, AccessLog

#: the type(s) of each key's value in a JSON line (None: may be null)
TYPES: dict[str, tuple[type | None, ...]] = {
    "time": (str,),
    "request_id": (str,),
    "route": (str, None),
    "method": (str,),
    "path": (str,),
    "status": (int,),
    "duration_ms": (float, int),
    "upstream_status": (int, None),
    "upstream_ms": (float, int, None),
    "client_id": (str, None),
    "sub": (str, None),
    "reason": (str, None),
    "bytes_in": (int,),
    "bytes_out": (int,),
}
assert tuple(TYPES) == KEYS


class LogPipe:
    """An ``AccessLog`` writing to a pipe, and the lines read back from it."""

    def __init__(self, format: str = "json") -> None:
        self._read, self._write = os.pipe()
        self.log = AccessLog(format, fd=self._write)
        self._buffer = b""
        self.raw: list[bytes] = []

    def lines(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """The first ``count`` lines written (blocking until they are, or failing)."""
        deadline = time.monotonic() + timeout
        while len(self.raw) < count:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(0.0, remaining))
            if not ready:
                pytest.fail(f"{len(self.raw)} access-log line(s) within {timeout}s, not {count}")
            self._buffer += os.read(self._read, 1 << 16)
            *whole, self._buffer = self._buffer.split(b"\n")
            self.raw += [line + b"\n" for line in whole]
        return self.raw[:count]

    def readable(self) -> bool:
        """Bytes are waiting in the pipe (or were read already and not yet returned)."""
        return bool(self._buffer) or bool(select.select([self._read], [], [], 0)[0])

    def entries(self, count: int) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines(count)]

    def entry(self) -> dict[str, Any]:
        """The next line (after those already read), parsed."""
        return self.entries(len(self.raw) + 1)[-1]

    def close(self) -> None:
        self.log.close()  # what is left goes out now; later flushes have nothing to write
        os.close(self._read)
        os.close(self._write)


def assert_shape(entry: dict[str, Any]) -> None:
    """Exactly the documented keys, each of its documented type."""
    assert tuple(entry) == KEYS
    for key, types in TYPES.items():
        value = entry[key]
        allowed = tuple(t for t in types if t is not None)
        assert (value is None and None in types) or (
            isinstance(value, allowed) and not isinstance(value, bool)
        ), (key, value)
