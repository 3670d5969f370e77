"""How a redirect URI presented in a request is compared with the ones a client registered."""

from __future__ import annotations

from urllib.parse import urlsplit


def redirect_uri_matches(registered: str, presented: str) -> bool:
    """Exact string match (RFC 9700 §2.1), except that a loopback IP redirect URI may use any
    port (RFC 8252 §7.3): native apps get an ephemeral port at run time. Only the port may
    differ: everything else, down to an empty ``?`` or ``#``, must be the same string."""
    if registered == presented:
        return True
    reg, pre = _loopback_parts(registered), _loopback_parts(presented)
    return reg is not None and reg == pre


def _loopback_parts(uri: str) -> tuple[str, str] | None:
    """``(host, rest)`` of an ``http://`` loopback IP URI with a valid port, else None."""
    scheme = "http://"
    if not uri.startswith(scheme):
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises on a malformed or out-of-range port
    except ValueError:
        return None
    if parts.hostname not in ("127.0.0.1", "::1") or port == 0 or "@" in parts.netloc:
        return None
    host = parts.netloc if port is None else parts.netloc[: parts.netloc.rindex(":")]
    if host not in ("127.0.0.1", "[::1]"):  # "127.0.0.1:" (empty port), odd spellings
        return None
    return host, uri[len(scheme) + len(parts.netloc) :]
