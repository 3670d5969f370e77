"""Header rewriting between client and upstream, both ways.

Request, in one pass over the client's headers:

- hop-by-hop headers (RFC 9110 §7.6.1) are dropped, with every header that ``Connection``
  names; so are ``Host`` (the upstream's own is sent), ``Authorization`` unless the route
  forwards the token, and ``Expect`` (the server in front of the gateway has already answered
  ``100 Continue``, RFC 9110 §10.1.1);
- identity headers are dropped in any spelling (``X-Forwarded-User``, ``x_forwarded_user``,
  ...): many servers (CGI, WSGI, nginx with ``underscores_in_headers``) fold ``_`` into ``-``,
  so a client could smuggle one past a case-only comparison;
- ``X-Forwarded-For/-Proto/-Host`` and ``Forwarded`` (RFC 7239) are set aside for
  ``forwarded.py``, which extends them for a trusted proxy and replaces them for anyone else.

The gateway then adds the identity headers it vouches for, from the validated token.

Response: hop-by-hop headers and those the upstream's ``Connection`` names are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import IdentityHeaders
from gateway.errors import InvalidToken
from gateway.introspect.validator import AccessToken

#: RFC 9110 §7.6.1 and its predecessors' list (RFC 2616 §13.5.1), plus Proxy-Connection
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"trailer",
    }
)
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})


@dataclass(slots=True)
class IncomingHeaders:
    """What one pass over the client's headers yields."""

    #: end-to-end headers to pass on, already decoded for the upstream client
    kept: list[tuple[str, str]] = field(default_factory=list)
    host: str | None = None
    authorization: list[str] = field(default_factory=list)
    #: ``X-Forwarded-*`` / ``Forwarded`` values as received, by lower-case name
    forwarded: dict[bytes, list[str]] = field(default_factory=dict)
    #: RFC 9112 §6.3: a request has a body only when it says so
    has_body: bool = False


def connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    """Header names listed in ``Connection`` values (RFC 9110 §7.6.1)."""
    return frozenset(
        token.strip().lower() for value in values for token in value.split(b",") if token.strip()
    )


class HeaderPolicy:
    """The per-config part of header rewriting, computed once."""

    def __init__(self, identity: IdentityHeaders) -> None:
        self._identity = identity
        #: identity header names, lower-case with "-", as a client might send them
        self._identity_keys = frozenset(
            name.lower().replace("_", "-").encode("latin-1") for name in identity.names()
        )

    def split_request(self, raw: list[tuple[bytes, bytes]]) -> IncomingHeaders:
        incoming = IncomingHeaders()
        kept = incoming.kept
        connection: list[bytes] = []
        named: list[tuple[bytes, str]] = []
        for name, value in raw:
            if name in HOP_BY_HOP or name == b"expect":
                if name == b"connection":
                    connection.append(value)
                elif name == b"transfer-encoding":
                    incoming.has_body = True
                continue
            text = value.decode("utf-8", "replace")
            if name == b"host":
                incoming.host = text.lower()
            elif name == b"authorization":
                incoming.authorization.append(text)
            elif name in FORWARDED:
                incoming.forwarded.setdefault(name, []).append(text)
            elif b"_" in name or name in self._identity_keys:
                if name.replace(b"_", b"-") not in self._identity_keys:
                    named.append((name, text))
            else:
                if name == b"content-length":
                    incoming.has_body = value != b"0"
                named.append((name, text))
        dropped = connection_tokens(connection) if connection else frozenset()
        kept.extend((name.decode("latin-1"), text) for name, text in named if name not in dropped)
        if dropped:
            incoming.authorization = [] if b"authorization" in dropped else incoming.authorization
            for name in dropped & FORWARDED:
                incoming.forwarded.pop(name, None)
        return incoming

    def identity(self, token: AccessToken) -> list[tuple[str, str]]:
        """The identity headers vouched for by ``token``."""
        names = self._identity
        headers = [(names.user, token.sub), (names.client_id, token.client_id)]
        if token.email:
            headers.append((names.email, token.email))
        headers.append((names.scopes, token.scope))
        for _, value in headers:
            if not value.isprintable():
                raise InvalidToken("claims cannot be sent as headers")
        return headers


def response_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers minus hop-by-hop ones, lower-cased for ASGI."""
    headers = [(name.lower(), value) for name, value in raw]
    connection = [value for name, value in headers if name == b"connection"]
    dropped = HOP_BY_HOP | connection_tokens(connection) if connection else HOP_BY_HOP
    return [(name, value) for name, value in headers if name not in dropped]
