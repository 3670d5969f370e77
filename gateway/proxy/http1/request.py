"""The request head in one piece, with its framing decided and its bytes checked.

RFC 9112 §3: request-line = method SP request-target SP HTTP-version, then the Host field
first (§3.2), then the caller's end-to-end fields, then the framing this client adds:

- no body (``body is None``): nothing, and no Content-Length unless the caller sent one;
- the caller sent Content-Length: the body goes as is, and must be exactly that long
  (RFC 9112 §6.2; a shorter or longer body aborts the request: the upstream would otherwise
  read our next request as the rest of this one);
- otherwise ``Transfer-Encoding: chunked`` (RFC 9112 §7.1), the only coding we apply.

Field values can come from hostile clients. A CR, LF or NUL in one would end the field early
and let the client write fields (or a whole second request) of its own: RFC 9110 §5.5 says a
recipient "MUST either reject the message or replace each of those characters with SP", and a
sender must never produce them. One ``bytes.translate`` over the joined head counts them: each
line holds exactly one CR and one LF, so any other count means a smuggled line break.

A caller's ``Transfer-Encoding`` or ``Host`` is refused too: both are this client's to write,
and a second one is the classic ingredient of request smuggling (RFC 9112 §11.2).
"""

from __future__ import annotations

from gateway.proxy.http1.errors import RequestError
from gateway.proxy.http1.origin import Origin

#: RFC 9110 §9.2.2: repeating one of these has the same effect, so a request that never
#: reached the upstream can be sent again
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_METHODS = {
    m: m.encode("ascii") + b" "
    for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
}
_SPECIAL = frozenset({b"content-length", b"transfer-encoding", b"host", b"expect", b"connection"})
_CHUNKED = b"transfer-encoding: chunked\r\n"
_LINE_BREAKS = b"\r\n\x00"


class PreparedRequest:
    """What the connection needs to send one request and read its response."""

    __slots__ = ("expect", "head", "head_only", "idempotent", "keep_alive", "length")

    def __init__(self, head: bytes, method: str) -> None:
        self.head = head
        #: RFC 9110 §9.3.2: a response to HEAD has no body, whatever its fields say
        self.head_only = method == "HEAD"
        self.idempotent = method in IDEMPOTENT
        #: the body's declared length (None: chunked, or no body)
        self.length: int | None = None
        #: RFC 9110 §10.1.1: hold the body until ``100 Continue`` (or a short wait)
        self.expect = False
        #: False when the caller's own Connection field asks to close (RFC 9112 §9.6)
        self.keep_alive = True


def prepare(
    origin: Origin,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    has_body: bool,
) -> PreparedRequest:
    """Build the head; raise ``RequestError`` for anything that must not be sent."""
    verb = _METHODS.get(method)
    if verb is None:
        if not method.isascii():
            raise RequestError("the method is not ASCII")
        verb = method.encode("ascii") + b" "
    parts = [verb, target, origin.head_tail]
    special = False
    for name, value in headers:
        if name in _SPECIAL:
            special = True
        parts += (name, b": ", value, b"\r\n")
    fields = _framing_fields(headers) if special else None
    length = fields[0] if fields is not None else None
    lines = len(headers) + 3  # request line, Host, the fields, the empty line
    if has_body and length is None:
        parts.append(_CHUNKED)
        lines += 1
    parts.append(b"\r\n")
    head = b"".join(parts)
    if len(head) - len(head.translate(None, _LINE_BREAKS)) != 2 * lines or b" " in target:
        raise RequestError("a request field or the target holds CR, LF, NUL or a space")
    request = PreparedRequest(head, method)
    if fields is not None:
        request.length, expect, request.keep_alive = fields
        request.expect = expect and has_body
    return request


def _framing_fields(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool, bool]:
    """Content-Length, a 100-continue expectation and ``Connection: close`` from the caller."""
    length: int | None = None
    expect = False
    keep_alive = True
    for name, value in headers:
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and int(value) != length):
                raise RequestError("the request's Content-Length is not one decimal number")
            length = int(value)
        elif name in (b"transfer-encoding", b"host"):
            raise RequestError(f"the client writes {name.decode()} itself")
        elif name == b"expect":
            expect = expect or value.strip().lower() == b"100-continue"
        elif name == b"connection":
            tokens = {token.strip().lower() for token in value.split(b",")}
            keep_alive = keep_alive and b"close" not in tokens
    return length, expect, keep_alive
