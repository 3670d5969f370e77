"""One request's context, built in one place for every request the gateway serves: its own
endpoints, ``/decisions`` and the proxy alike.

As Oathkeeper carries one small object through its pipeline, a request carries one
``RequestContext``: made as it arrives (who sent it, its id, its method and path as sent) and
filled in as it goes (the route, the token's client and subject, the status and why, the
upstream's answer, bytes each way). The access log (``gateway.accesslog``) writes its line
from it once the response has ended. Nothing in it can hold a credential: no header but
``X-Request-Id``, no query, no body.

Request ids (``X-Request-Id``): a value from a peer in ``[proxy] trusted_proxies`` is kept when
it is 1 to 128 visible ASCII characters; anything else (an untrusted peer, an invalid value,
the header sent twice) is replaced by a fresh one, 32 hex digits from ``os.urandom`` (read 64
ids at a time: one system call each would cost more than the rest of the id). The id is
logged, returned to the client and forwarded upstream.

The raw path is the path as the client sent it: ``scope["raw_path"]`` (percent-encoded, no
query), or, from a server that gives none, the decoded path encoded canonically
(``gateway.proxy.paths.encode_path``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from gateway.proxy.paths import encode_path

REQUEST_ID = b"x-request-id"
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,128}")
#: fresh request ids, read from the OS 64 at a time; a forked child must not reuse its parent's
_FRESH_IDS: list[bytes] = []
os.register_at_fork(after_in_child=_FRESH_IDS.clear)


def request_id(
    received: bytes | None, peer: str | None, is_trusted: Callable[[str | None], bool]
) -> bytes:
    """The request's id: ``received`` when valid and sent by a trusted ``peer``, else a new
    one."""
    if received is not None and _VALID_ID.fullmatch(received) and is_trusted(peer):
        return received
    if not _FRESH_IDS:
        ids = os.urandom(16 * 64).hex().encode()
        _FRESH_IDS[:] = [ids[i : i + 32] for i in range(0, len(ids), 32)]
    return _FRESH_IDS.pop()


def raw_path(scope: dict[str, Any]) -> bytes:
    """The path of an HTTP scope as the client sent it (percent-encoded, without the query)."""
    return scope.get("raw_path") or encode_path(scope["path"]).encode()


def received_id(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The ``X-Request-Id`` of raw ASGI headers; ``b""`` (invalid) when sent more than once."""
    values = [value for name, value in headers if name == REQUEST_ID]
    return values[0] if len(values) == 1 else b"" if values else None


class RequestContext:
    """One request as the gateway knows it: set up as it arrives, filled in as it goes."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "client_id",
        "method",
        "peer",
        "raw_path",
        "reason",
        "request_id",
        "route",
        "started",
        "status",
        "sub",
        "upstream_ms",
        "upstream_status",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        received: bytes | None,
        is_trusted: Callable[[str | None], bool],
    ) -> None:
        """The context of the HTTP request of ``scope``; ``received``: its ``X-Request-Id``
        (``received_id``), kept when ``is_trusted`` says its peer may set it."""
        #: ``time.perf_counter()`` when the request arrived
        self.started = time.perf_counter()
        client = scope.get("client")
        #: the peer's address as the server saw it (None: the server gives none)
        self.peer: str | None = client[0] if client else None
        self.request_id = request_id(received, self.peer, is_trusted)
        self.method: str = scope["method"]
        self.raw_path = raw_path(scope)
        self.route: str | None = None
        #: what the client got; uvicorn answers 500 to an app that fails before answering
        self.status = 500
        self.upstream_status: int | None = None
        self.upstream_ms: float | None = None
        self.client_id: str | None = None
        self.sub: str | None = None
        #: why a request failed, as a short fixed word (``GatewayError.reason``)
        self.reason: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    def upstream_answered(self, status: int) -> None:
        """The upstream's response head is in."""
        self.status = self.upstream_status = status
        self.upstream_ms = (time.perf_counter() - self.started) * 1000
