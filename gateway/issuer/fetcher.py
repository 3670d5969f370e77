"""The one way the issuer opens a connection to a URL a client names (a Client ID Metadata
Document's, a ``private_key_jwt`` client's ``jwks_uri``), safe against server-side request forgery.

A client chooses the URL; fetched naively, it points the gateway at whatever the gateway can
reach and the client cannot: a cloud metadata service, an admin port on loopback, a database on
the private network. So ``SafeFetcher.fetch``:

- takes ``https://`` only, verified against the system's CAs as OpenSSL finds them (so
  ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` work) or a given PEM bundle, with SNI and host-name
  verification;
- resolves the host once, and refuses it unless every address it resolves to is public: not
  loopback, private, shared (CGNAT), link-local, unique-local, site-local, multicast,
  reserved or unspecified, an IPv4 address carried inside an IPv6 one (mapped, 6to4, Teredo,
  NAT64) judged as that IPv4 address (``allow_private`` lifts this, for tests and labs);
- connects to an address that was checked, never by a second lookup: a DNS answer that
  changes between the check and the connection (rebinding) changes nothing;
- follows no redirect (a 3xx is a failure, as is any status but 200), reads at most
  ``max_bytes`` of body, wants the one ``Content-Type`` asked for;
- keeps one deadline for all of it: the lookup, the connection, the handshake, the head and
  every read of the body (a server that sends a byte a second gains nothing).

Every failure is a ``FetchRefused`` whose message names the rule broken and nothing the server
sent: not its body, nor the addresses its name resolves to. Foreign exceptions (socket, TLS,
``http.client``) are translated here, once.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``(host, port)`` to the addresses it resolves to, as strings: the seam tests use to make a
#: name resolve where no real DNS would
Resolver = Callable[[str, int], list[str]]

#: RFC 6052 §2.1: the well-known NAT64 prefix, whose last 32 bits are an IPv4 address
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class FetchRefused(Exception):
    """The fetch failed or was refused; ``str()`` is a clause saying why ("the server answered
    with a redirect, which is not followed"), never quoting what the server sent."""


@dataclass(frozen=True)
class Fetched:
    body: bytes
    #: ``Cache-Control: max-age`` in seconds (0 for ``no-store`` / ``no-cache``), None if unsaid
    max_age: int | None


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), TCP addresses only."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(sockaddr[0]) for *_, sockaddr in found]


def _carried(address: IPAddress) -> Iterator[IPAddress]:
    """Where ``address`` leads: an IPv4-mapped or NAT64 IPv6 address is only another spelling
    of its IPv4 address; a 6to4 or Teredo one leads to its IPv4 addresses too."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            yield address.ipv4_mapped
            return
        if address in NAT64:
            yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            return
        if address.sixtofour is not None:
            yield address.sixtofour
        if address.teredo is not None:
            yield from address.teredo
    yield address


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` (and every address it carries) is one of the public internet's."""
    for candidate in _carried(address):
        if (
            candidate.is_loopback
            or candidate.is_private
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
            or not candidate.is_global
        ):
            return False
        if isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local:
            return False
    return True


def parse_cache_control(values: list[str]) -> int | None:
    """The ``max-age`` of the ``Cache-Control`` fields (0 for ``no-store`` or ``no-cache``;
    None when neither says anything usable)."""
    max_age: int | None = None
    for value in values:
        for directive in value.split(","):
            name, _, argument = directive.strip().partition("=")
            name = name.strip().lower()
            if name in ("no-store", "no-cache"):
                return 0
            argument = argument.strip().strip('"')
            if name == "max-age" and argument.isascii() and argument.isdigit():
                max_age = int(argument)
    return max_age


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.seconds = seconds

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise FetchRefused(f"the fetch took longer than {self.seconds:g} s")
        return left


class SafeFetcher:
    """``fetch(url)``: a document from a URL a client named, by the rules above.

    ``ca_file``: a PEM bundle to verify servers with instead of the system's CAs;
    ``allow_private``: loopback and private addresses allowed (tests and labs only);
    ``timeout``: seconds for the whole fetch; ``max_bytes``: the largest body taken;
    ``resolver``: the name lookup (``system_resolver``)."""

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        allow_private: bool = False,
        timeout: float = 5.0,
        max_bytes: int = 5 * 1024,
        resolver: Resolver = system_resolver,
    ) -> None:
        # cafile given: it alone is trusted (create_default_context loads the system's CAs
        # only when no CA is named)
        self.tls = ssl.create_default_context(cafile=ca_file)
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.resolver = resolver

    def fetch(self, url: str, content_type: str | tuple[str, ...] = "application/json") -> Fetched:
        """``content_type``: the media type the answer must have, or a tuple of those taken
        (all of them asked for in ``Accept``, the first preferred)."""
        deadline = _Deadline(self.timeout)
        try:
            parts = urlsplit(url)
            port = parts.port or 443
        except ValueError:
            raise FetchRefused("the URL is not valid") from None
        host = parts.hostname
        if parts.scheme != "https" or not host:
            raise FetchRefused("the URL is not an https URL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        addresses = self._checked_addresses(host, port, deadline)
        sock = self._connect(addresses, port, deadline)
        try:
            return self._exchange(sock, host, port, target, content_type, deadline)
        finally:
            sock.close()

    # --- the address rule ------------------------------------------------------------------

    def _checked_addresses(self, host: str, port: int, deadline: _Deadline) -> list[IPAddress]:
        try:
            literal: list[str] | None = [str(ipaddress.ip_address(host))]
        except ValueError:
            literal = None
        names = literal if literal is not None else self._resolve(host, port, deadline)
        addresses: list[IPAddress] = []
        for name in names:
            try:
                addresses.append(ipaddress.ip_address(name.partition("%")[0]))
            except ValueError:
                raise FetchRefused(
                    "the host name resolves to something that is not an address"
                ) from None
        if not addresses:
            raise FetchRefused("the host name resolves to no address")
        if not self.allow_private and not all(is_public(a) for a in addresses):
            raise FetchRefused("the host resolves to an address that is not public")
        return addresses

    def _resolve(self, host: str, port: int, deadline: _Deadline) -> list[str]:
        """The resolver, within the deadline: ``getaddrinfo`` has no timeout of its own, so
        it runs on a thread of its own, left to finish alone if the deadline passes first."""
        outcome: list[list[str] | BaseException] = []
        done = threading.Event()

        def resolve() -> None:
            try:
                outcome.append(self.resolver(host, port))
            except Exception as error:
                outcome.append(error)
            finally:
                done.set()

        threading.Thread(target=resolve, name="gateway-resolve", daemon=True).start()
        if not done.wait(deadline.remaining()):
            raise FetchRefused(f"the fetch took longer than {self.timeout:g} s")
        result = outcome[0]
        if isinstance(result, BaseException):
            raise FetchRefused("the host name does not resolve") from None
        return result

    # --- the connection --------------------------------------------------------------------

    def _connect(self, addresses: list[IPAddress], port: int, deadline: _Deadline) -> socket.socket:
        """A TCP connection to the first of ``addresses`` that answers: numeric, so no lookup
        happens again (``AI_NUMERICHOST``)."""
        for address in addresses:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                str(address), port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(deadline.remaining())
                sock.connect(sockaddr)
                return sock
            except FetchRefused:
                sock.close()
                raise
            except TimeoutError:
                sock.close()
                raise FetchRefused(f"the fetch took longer than {self.timeout:g} s") from None
            except OSError:
                sock.close()
        raise FetchRefused("the server could not be connected to")

    def _exchange(
        self,
        sock: socket.socket,
        host: str,
        port: int,
        target: str,
        content_type: str | tuple[str, ...],
        deadline: _Deadline,
    ) -> Fetched:
        try:
            sock.settimeout(deadline.remaining())
            tls = self.tls.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError:
            raise FetchRefused("the server's TLS certificate could not be verified") from None
        except (ssl.SSLError, ConnectionError):
            raise FetchRefused("the TLS handshake with the server failed") from None
        except TimeoutError:
            raise FetchRefused(f"the fetch took longer than {self.timeout:g} s") from None
        try:
            return self._get(tls, host, port, target, content_type, deadline)
        except TimeoutError:
            raise FetchRefused(f"the fetch took longer than {self.timeout:g} s") from None
        except (http.client.HTTPException, ssl.SSLError, OSError):
            raise FetchRefused("the server did not answer with valid HTTP") from None
        finally:
            tls.close()

    def _get(
        self,
        tls: ssl.SSLSocket,
        host: str,
        port: int,
        target: str,
        content_type: str | tuple[str, ...],
        deadline: _Deadline,
    ) -> Fetched:
        accepted = (content_type,) if isinstance(content_type, str) else content_type
        conn = http.client.HTTPSConnection(host, port, context=self.tls)
        conn.sock = tls  # connected and checked above: http.client must not connect again
        try:
            tls.settimeout(deadline.remaining())
            conn.request(
                "GET",
                target,
                headers={
                    "Accept": ", ".join(accepted),
                    "User-Agent": "gateway",
                    "Connection": "close",
                },
            )
            response = conn.getresponse()
            try:
                return self._read(response, tls, accepted, deadline)
            finally:
                response.close()
        finally:
            conn.close()

    def _read(
        self,
        response: http.client.HTTPResponse,
        tls: ssl.SSLSocket,
        accepted: tuple[str, ...],
        deadline: _Deadline,
    ) -> Fetched:
        if 300 <= response.status < 400:
            raise FetchRefused("the server answered with a redirect, which is not followed")
        if response.status != 200:
            raise FetchRefused(f"the server answered with status {response.status}, not 200")
        media_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if media_type not in accepted:
            raise FetchRefused(f"the answer's Content-Type is not {' or '.join(accepted)}")
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            raise FetchRefused(f"the body is larger than {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            tls.settimeout(deadline.remaining())
            chunk = response.read1(self.max_bytes + 1 - size)
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchRefused(f"the body is larger than {self.max_bytes} bytes")
            chunks.append(chunk)
        cache_control = response.headers.get_all("Cache-Control") or []
        return Fetched(b"".join(chunks), parse_cache_control(cache_control))
