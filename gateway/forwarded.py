"""``Forwarded`` (RFC 7239) and ``X-Forwarded-For/-Proto/-Host``: who the client is.

These headers are only as trustworthy as whoever wrote them. The client's own values are
dropped unless the connection comes from a proxy listed in ``[proxy] trusted_proxies``; the
gateway then appends its hop to the trusted chain (RFC 7239 §7.1) and keeps the proto and
host the trusted proxy reported. From anyone else, the gateway's view replaces them: those
headers depend only on (peer, scheme, host), so they are built once per triple and remembered.
The host the gateway reports (``X-Forwarded-Host``, ``Forwarded: host=``) is the client's,
normalised as routes see it (``gateway.hosts``: lower-case, no trailing dot), with its port.

The same trust decides who the client is where the gateway itself must know (the login
throttle): ``client_address``; and the URL the client used, which a DPoP proof signs (RFC 9449
§4.3: ``htu``): ``origin``.
"""

from __future__ import annotations

import ipaddress

FOR = b"x-forwarded-for"
PROTO = b"x-forwarded-proto"
HOST = b"x-forwarded-host"
FORWARDED = b"forwarded"


#: remembered header sets for untrusted requests; a client choosing many Host values can only
#: make the gateway rebuild them
VIEW_CACHE_SIZE = 4096

Header = tuple[bytes, bytes]


class ForwardedPolicy:
    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self._views: dict[tuple[str | None, str, str | None], list[Header]] = {}

    def is_trusted(self, peer: str | None) -> bool:
        if not self._networks or peer is None:
            return False
        address = _ip(peer)
        return address is not None and any(address in network for network in self._networks)

    def client_address(self, peer: str | None, forwarded_for: list[str]) -> str:
        """The client: the peer, or from a trusted peer the right-most ``X-Forwarded-For``
        entry that is not itself a trusted proxy (each proxy appends the address it saw, so
        entries left of the first untrusted one are whatever the client chose to send).
        When every entry is trusted, the left-most: the farthest hop anyone vouched for."""
        if not self.is_trusted(peer) or not forwarded_for:
            return peer or "unknown"
        entries = [e.strip() for e in ",".join(forwarded_for).split(",") if e.strip()]
        for entry in reversed(entries):
            if not self.is_trusted(entry):
                return entry
        return entries[0] if entries else peer or "unknown"

    def origin(
        self, received: dict[bytes, list[str]], peer: str | None, scheme: str, host: str | None
    ) -> str:
        """``scheme://host`` as the client used it: the request's own ``scheme`` and ``host``
        (as sent), or from a trusted peer the proto and host it reports (``X-Forwarded-Proto``
        / ``-Host``, else ``Forwarded``'s ``proto=`` / ``host=``), each the last value given:
        the one the nearest trusted proxy wrote or vouched for. Empty without a host."""
        if received and self.is_trusted(peer):
            forwarded = _last(received.get(FORWARDED))
            scheme = _last(received.get(PROTO)) or _param(forwarded, "proto") or scheme
            host = _last(received.get(HOST)) or _param(forwarded, "host") or host
        return f"{scheme.lower()}://{host}" if host else ""

    def headers(
        self,
        received: dict[bytes, list[str]],
        peer: str | None,
        scheme: str,
        host: str | None,
    ) -> list[Header]:
        """The forwarding headers to send upstream for a request from ``peer`` to ``host``
        (a ``Host.authority``, or None without a host)."""
        if received and self.is_trusted(peer):
            return self._build(received, peer, scheme, host)
        key = (peer, scheme, host)
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= VIEW_CACHE_SIZE:
                self._views.clear()
            view = self._views[key] = self._build({}, peer, scheme, host)
        return view

    def _build(
        self, prior: dict[bytes, list[str]], peer: str | None, scheme: str, host: str | None
    ) -> list[Header]:
        node = peer or "unknown"
        forwarded_for = _join(prior.get(FOR), node)
        proto = _join(prior.get(PROTO)) or scheme
        element = f"for={_node(node)};proto={scheme}"
        if host:
            element += f";host={_quoted(host)}"
        headers = [
            ("X-Forwarded-For", forwarded_for),
            ("X-Forwarded-Proto", proto),
            ("Forwarded", _join(prior.get(FORWARDED), element)),
        ]
        forwarded_host = _join(prior.get(HOST)) or host
        if forwarded_host:
            headers.append(("X-Forwarded-Host", forwarded_host))
        return [(name.encode(), value.encode("utf-8")) for name, value in headers]


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a peer or an ``X-Forwarded-For`` entry gives it (``[v6]`` bracketed or
    not), else None."""
    try:
        return ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _join(values: list[str] | None, last: str | None = None) -> str:
    """Several header lines of one list-valued field, as one comma-separated value."""
    parts = [*values] if values else []
    if last is not None:
        parts.append(last)
    return ", ".join(parts)


def _last(values: list[str] | None) -> str:
    """The last element of a list-valued field's lines, stripped ("" for none)."""
    return values[-1].rpartition(",")[2].strip() if values else ""


def _param(element: str, name: str) -> str:
    """A parameter of one ``Forwarded`` element (RFC 7239 §4), unquoted ("" for none)."""
    for pair in element.split(";"):
        key, _, value = pair.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return ""


def _node(address: str) -> str:
    """RFC 7239 §6: an IPv6 node is bracketed and quoted."""
    return f'"[{address}]"' if ":" in address else address


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
