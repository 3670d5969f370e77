"""``Forwarded`` (RFC 7239) and ``X-Forwarded-For/-Proto/-Host``: who the client is.

These headers are only as trustworthy as whoever wrote them. The client's own values are
dropped unless the connection comes from a proxy listed in ``[proxy] trusted_proxies``; the
gateway then appends its hop to the trusted chain (RFC 7239 §7.1) and keeps the proto and
host the trusted proxy reported. From anyone else, the gateway's view replaces them.
"""

from __future__ import annotations

import ipaddress

FOR = b"x-forwarded-for"
PROTO = b"x-forwarded-proto"
HOST = b"x-forwarded-host"
FORWARDED = b"forwarded"


class ForwardedPolicy:
    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def is_trusted(self, peer: str | None) -> bool:
        if not self._networks or peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def headers(
        self,
        received: dict[bytes, list[str]],
        peer: str | None,
        scheme: str,
        host: str | None,
    ) -> list[tuple[str, str]]:
        """The forwarding headers to send upstream for a request from ``peer``."""
        prior = received if received and self.is_trusted(peer) else {}
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
        return headers


def _join(values: list[str] | None, last: str | None = None) -> str:
    """Several header lines of one list-valued field, as one comma-separated value."""
    parts = [*values] if values else []
    if last is not None:
        parts.append(last)
    return ", ".join(parts)


def _node(address: str) -> str:
    """RFC 7239 §6: an IPv6 node is bracketed and quoted."""
    return f'"[{address}]"' if ":" in address else address


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
