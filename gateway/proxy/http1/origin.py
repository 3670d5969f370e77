"""Where a route's requests go: scheme, host, port and TLS settings, fixed at config load.

An ``Origin`` is immutable and compared by identity: the route table builds one per distinct
upstream, and the forwarder keeps one connection pool per ``Origin`` (a dict probe on the
object's identity, nothing hashed per request).

RFC 9112 §3.2: "A client MUST send a Host header field in all HTTP/1.1 request messages";
for an origin it is the authority of the target URI: ``host``, or ``host:port`` when the
port is not the scheme's default (RFC 9110 §7.2, §4.2.1-2). The request line's tail and the
Host line are precomputed here, so a request head is one join.

TLS (RFC 9110 §4.3.4): the certificate is verified against the system store by default
(``ssl.create_default_context``), or against ``tls_ca`` alone when given; SNI names the host
on every handshake; ALPN offers ``http/1.1`` only, the one protocol this client speaks.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, eq=False, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    #: the Host field value: ``host`` or ``host:port`` (IPv6 literals in brackets)
    host_header: bytes
    ssl: ssl.SSLContext | None = None
    #: the name sent in SNI and checked against the certificate (None for plain http)
    server_hostname: str | None = None
    #: ``" HTTP/1.1\r\nHost: <host_header>\r\n"``: what follows the request-target
    head_tail: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "head_tail", b" HTTP/1.1\r\nHost: " + self.host_header + b"\r\n")

    @classmethod
    def from_url(cls, url: str, tls_ca: str | None = None, tls_verify: bool = True) -> Origin:
        """The origin of an ``http://`` or ``https://`` URL (its path and query are ignored).

        Raises ``ValueError`` for another scheme or a bad port, ``OSError`` / ``ssl.SSLError``
        for a ``tls_ca`` that cannot be loaded.
        """
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        host = parts.hostname
        port = parts.port or DEFAULT_PORTS[scheme]
        # RFC 9110 §4.2.1: the authority is ASCII; a non-ASCII name goes as its A-label
        authority = host.encode("ascii") if host.isascii() else host.encode("idna")
        if b":" in authority:
            authority = b"[" + authority + b"]"
        if port != DEFAULT_PORTS[scheme]:
            authority += b":%d" % port
        context = None
        if scheme == "https":
            context = tls_context(tls_ca, tls_verify)
        return cls(
            scheme=scheme,
            host=host,
            port=port,
            host_header=authority,
            ssl=context,
            server_hostname=host if context is not None else None,
        )


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """Verification on (system store, or ``ca_file`` alone), unless ``verify`` is false."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context
