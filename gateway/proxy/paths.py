"""Request-path hygiene: the path a route matches is exactly the path the upstream receives.

The raw request target (``scope["raw_path"]``) is percent-decoded once (RFC 3986 §2.1) and
refused with 400 when what it means is ambiguous between the gateway and an upstream:

- dot segments ``.`` / ``..``, literal or encoded (``%2e``): RFC 3986 §5.2.4 would remove
  them, so ``/orders/../admin`` would be matched as ``/orders`` and served as ``/admin``;
- a segment that is ``.``, ``..`` or empty once cut at its first ``;`` (``/pub/..;/orders``,
  ``/pub/.;x/y``, ``/pub/;x/y``, and ``%3B`` for ``;``): servers that read path parameters
  (RFC 3986 §3.3; Tomcat and other servlet containers) drop them first and then meet a dot
  segment or ``//``. The proxy re-encodes ``;`` and is safe, but behind an edge (``/decisions``)
  the upstream receives the path as the client wrote it;
- encoded ``/`` or ``\\`` (``%2F``, ``%5C``) and literal ``\\``: some servers split on them
  after decoding, others do not;
- ``//`` (an empty segment): servers merge or keep it differently;
- NUL and other control characters, and bytes that are not UTF-8 once decoded;
- the same characters encoded twice (``%252e``), for upstreams that decode again.

The decoded path is what routes match. The upstream gets it re-encoded canonically
(``encode_path``), so decoding it once yields the very same string; in particular ``;`` is
sent encoded.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

from gateway.errors import BadRequestPath

#: characters sent literally in a forwarded path (RFC 3986 §3.3 pchar minus ";", plus "/")
_SAFE = "/!$&'()*+,=:@"
#: decoded text that is forbidden: backslash, controls, and a second encoding of a
#: forbidden character (``%2e``, ``%2f``, ``%5c``, ``%00``)
_FORBIDDEN_DECODED = re.compile(r"[\\\x00-\x1f\x7f]|%(?:2e|2f|5c|00)", re.IGNORECASE)
_ENCODED_SEPARATOR = re.compile(rb"%(?:2f|5c)", re.IGNORECASE)
#: a raw path made only of characters ``encode_path`` leaves alone: it is its own encoding
_CANONICAL = re.compile(rb"[A-Za-z0-9\-._~/!$&'()*+,=:@]*")


def decode_path(raw_path: bytes) -> str:
    """Return the once-decoded path of ``raw_path``; raise ``BadRequestPath`` on any trick."""
    if not raw_path.startswith(b"/") or b"//" in raw_path:
        raise BadRequestPath()
    if _CANONICAL.fullmatch(raw_path):
        # the common case: printable ASCII with nothing encoded, no backslash, no control
        path = raw_path.decode("ascii")
        if "/." in path:
            _refuse_dot_segments(path)
        return path
    if b"%" in raw_path:
        if _ENCODED_SEPARATOR.search(raw_path):
            raise BadRequestPath("encoded '/' or '\\' in the path")
        decoded = unquote_to_bytes(raw_path)
    else:
        decoded = raw_path
    try:
        path = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestPath("the path is not UTF-8") from None
    if _FORBIDDEN_DECODED.search(path):
        raise BadRequestPath()
    if "/." in path:
        _refuse_dot_segments(path)
    if ";" in path:  # never on the canonical path above: ";" is not in it
        _refuse_parameter_tricks(path)
    return path


def _refuse_dot_segments(path: str) -> None:
    for segment in path.split("/"):
        if segment in (".", ".."):
            raise BadRequestPath("dot segments are not allowed in the path")


def _refuse_parameter_tricks(path: str) -> None:
    """A ``;`` decoded from ``%3B`` counts: an upstream may decode before it cuts."""
    for segment in path.split("/")[1:]:
        if ";" in segment and segment.partition(";")[0] in ("", ".", ".."):
            raise BadRequestPath("a path segment's parameters hide a dot segment or an empty one")


def encode_path(path: str) -> str:
    """The canonical encoding of a decoded path: one decode gives ``path`` back."""
    return quote(path, safe=_SAFE)


def upstream_target(raw_path: bytes, path: str, upstream_path: str, query: bytes) -> bytes:
    """The request-target the upstream receives: ``upstream_path`` encoded, plus the query.

    When the route passes the path through unchanged and the client already sent it in
    canonical form (the common case), the raw bytes are the answer: no re-encoding."""
    if upstream_path == path and _CANONICAL.fullmatch(raw_path):
        target = raw_path
    else:
        target = encode_path(upstream_path).encode("ascii")
    return target + b"?" + query if query else target
