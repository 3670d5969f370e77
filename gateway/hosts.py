"""Host names as routes, ``/decisions`` and the forwarding headers see them: one normalisation.

``Host`` carries ``uri-host [ ":" port ]`` (RFC 9110 §7.2, RFC 3986 §3.2.2-3.2.3); a host is
case-insensitive (RFC 3986 §3.2.2), and a DNS name may end in the root's empty label, so
``Admin.Local.:8443`` names the host ``admin.local``. Two spellings of one host must never reach
different routes: a trailing dot used to escape a host-specific route for the host-less one
behind it (the class of bug Envoy's ``strip_trailing_host_dot`` closes). So every reader of a
host (route matching, ``/decisions``, ``X-Forwarded-Host`` and ``Forwarded: host=``, route
``host`` values in the config) goes through ``parse_host``:

- lower-case, one trailing dot removed, the port set apart: routes match ``Host.name``; the
  forwarding headers carry ``Host.authority``, the name with the port the client used (as a
  decimal number);
- strict: a name is dot-separated labels of letters, digits, ``-`` and ``_`` (1 to 63 octets
  each, 253 in all); a name whose last label is a number must be an IPv4 address, a dotted quad
  of decimal octets without leading zeros (``0x7f.1`` and ``010.0.0.1`` mean 127.0.0.1 and
  8.0.0.1 to some resolvers); an IPv6 address is bracketed (RFC 3986 §3.2.2), and written back
  in its compressed form; a port is 1 to 65535;
- anything else is refused: userinfo (``@``), ``/``, ``\\``, spaces and controls,
  percent-encoding, non-ASCII (clients send A-labels, RFC 5890 §2.3.2.1), empty labels, a
  second trailing dot, an empty or bad port, a bracketed literal that is not IPv6 (IPvFuture,
  a zone id).

``HostCache`` remembers the answer per raw value, so the hot path pays one dict probe.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from gateway.errors import BadHost

#: dot-separated labels of 1 to 63 letters, digits, "-" or "_" (lower-case by then)
_NAME = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
#: what an IPv6 literal is written with (no "%" zone id, no IPvFuture "v")
_IPV6 = re.compile(r"[0-9a-f:.]+")
_PORT = re.compile(r"[0-9]{1,5}")
#: RFC 1035 §2.3.4: 255 octets on the wire, so 253 characters without the root's dot
MAX_NAME = 253

#: remembered answers; a client choosing many Host values can only make the gateway reparse
CACHE_SIZE = 4096


class Host(NamedTuple):
    #: what routes match: ``admin.local``, ``10.0.0.1``, ``[::1]``
    name: str
    #: what the forwarding headers carry: the name and the client's port, ``admin.local:8443``
    authority: str


def parse_host(value: str) -> Host:
    """The normalised host of a ``Host`` value (or a route's ``host``); ``ValueError`` if it
    is not a valid host with an optional port."""
    if not value.isascii():
        raise ValueError("not ASCII")
    value = value.lower()
    if value.startswith("["):
        literal, bracket, port = value[1:].partition("]")
        if not bracket or not _IPV6.fullmatch(literal):
            raise ValueError("not an IPv6 literal")
        name = f"[{ipaddress.IPv6Address(literal).compressed}]"
    else:
        name, colon, port = value.partition(":")
        port = colon + port
        name = name.removesuffix(".")
        if len(name) > MAX_NAME or not _NAME.fullmatch(name):
            raise ValueError("not a host name")
        if name[name.rfind(".") + 1 :].isdigit() and not _IPV4.fullmatch(name):
            raise ValueError("not an IPv4 address")
    if not port:
        return Host(name, name)
    if port[0] != ":" or not _PORT.fullmatch(port[1:]) or not 0 < int(port[1:]) <= 65535:
        raise ValueError("not a port")
    return Host(name, f"{name}:{int(port[1:])}")


class HostCache:
    """``parse_host`` per distinct raw value, remembered (bounded: clients choose the values)."""

    __slots__ = ("_hosts",)

    def __init__(self) -> None:
        #: raw value -> its host, or None when it is not valid
        self._hosts: dict[bytes, Host | None] = {}

    def parse(self, raw: bytes) -> Host:
        """The host of a raw ``Host`` (or ``X-Forwarded-Host``) value; ``BadHost`` if invalid."""
        try:
            host = self._hosts[raw]
        except KeyError:
            if len(self._hosts) >= CACHE_SIZE:
                self._hosts.clear()
            host = self._hosts[raw] = _parsed_or_none(raw)
        if host is None:
            raise BadHost()
        return host


def _parsed_or_none(raw: bytes) -> Host | None:
    try:
        return parse_host(raw.decode("latin-1"))
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """``localhost``, a name under it (RFC 6761 §6.3), or a loopback address, in any case and
    with a trailing dot: where a redirect URI reaches a program on the user's own device."""
    host = host.rstrip(".").lower().removeprefix("[").removesuffix("]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
