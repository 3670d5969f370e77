"""Header rewriting between client and upstream, both ways.

Request, in one pass over the client's headers:

- hop-by-hop headers (RFC 9110 §7.6.1) are dropped, with every header that ``Connection``
  names; so are ``Host`` (the upstream's own is sent) and ``Authorization`` unless the route
  forwards the token, and ``DPoP`` (RFC 9449: the proof goes with the token it is for) on the
  same terms. ``Expect: 100-continue`` is passed on (RFC 9110 §10.1.1: a proxy
  forwards the expectation), so the upstream decides whether it wants the body before the
  client sends it; any other expectation is dropped;
- identity headers (and the identity assertion's) are dropped in any spelling
  (``X-Forwarded-User``, ``x_forwarded_user``, ...): many servers (CGI, WSGI, nginx with
  ``underscores_in_headers``) fold ``_`` into ``-``, so a client could smuggle one past a
  case-only comparison;
- method overrides (``X-HTTP-Method-Override``, ...: ``overrides.py``) are set aside in any
  spelling too: the decision says whether they are honoured (and passed on) or dropped;
- ``X-Forwarded-For/-Proto/-Host`` and ``Forwarded`` (RFC 7239) are set aside for
  ``forwarded.py``, which extends them for a trusted proxy and replaces them for anyone else;
  ``X-Request-Id`` is set aside for ``gateway.context.request_id``, and the request's own id is
  sent.

The gateway then adds the identity headers it vouches for, from the validated token: built
once per verified token and remembered with it.

Names and values stay bytes as the ASGI server gave them (names lower-case): each header costs
one dict probe in a table built once per config, and only ``Authorization`` is decoded (as
latin-1, so a forwarded token goes on byte for byte); ``Host`` stays raw for the decision core's
host cache (``gateway.hosts``).

Response: hop-by-hop headers and those the upstream's ``Connection`` names are dropped, and
the upstream's ``X-Request-Id`` is replaced by the request's. So is every ``Set-Cookie`` field
that would set or clear a cookie of the gateway's, or one scoped to its paths
(``gateway.proxy.cookies``); the others pass. Each header costs one set probe; only those in
the set (rare but for ``Set-Cookie``) cost more.
"""

from __future__ import annotations

import functools

from gateway.config import AssertionConfig, IdentityHeaders
from gateway.context import REQUEST_ID
from gateway.errors import InvalidToken
from gateway.introspect.validator import AccessToken
from gateway.proxy.cookies import refused
from gateway.proxy.overrides import OVERRIDE_HEADERS

Header = tuple[bytes, bytes]

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
#: ``UNDERSCORE in name`` looks for one byte; ``b"_" in name`` first tries the needle as an
#: integer and raises and clears a TypeError inside, several times dearer
UNDERSCORE = ord("_")

SET_COOKIE = b"set-cookie"
#: response headers that are dropped (the request's own id is sent instead of the upstream's),
#: or looked at (Set-Cookie)
_RESPONSE_SPECIAL = HOP_BY_HOP | {REQUEST_ID, SET_COOKIE}

# what split_request does with a header, by its lower-case name
(
    _DROP,
    _CONNECTION,
    _CHUNKED,
    _EXPECT,
    _HOST,
    _AUTHORIZATION,
    _FORWARDED,
    _LENGTH,
    _ID,
    _OVERRIDE,
    _DPOP,
) = range(11)


class IncomingHeaders:
    """What one pass over the client's headers yields."""

    __slots__ = (
        "authorization",
        "dpop",
        "forwarded",
        "has_body",
        "host",
        "kept",
        "method_overrides",
        "request_id",
    )

    def __init__(self) -> None:
        #: end-to-end headers to pass on, as received
        self.kept: list[Header] = []
        #: ``Host`` as received (the last one; a repeated Host is the listener's to refuse)
        self.host: bytes | None = None
        self.authorization: list[str] = []
        #: ``DPoP`` proofs as received (RFC 9449 §4.1; more than one is refused)
        self.dpop: list[str] = []
        #: ``X-Forwarded-*`` / ``Forwarded`` values as received, by lower-case name
        self.forwarded: dict[bytes, list[str]] = {}
        #: RFC 9112 §6.3: a request has a body only when it says so
        self.has_body = False
        #: ``X-Request-Id`` as received; ``b""`` (never valid) when sent more than once
        self.request_id: bytes | None = None
        #: method override headers as received, in any spelling (rare: no list until one)
        self.method_overrides: tuple[Header, ...] = ()


@functools.lru_cache(maxsize=256)  # the values come from clients and upstreams: bounded
def named_by_connection(value: bytes) -> frozenset[bytes]:
    """The header names a (joined) ``Connection`` value lists (RFC 9110 §7.6.1), minus the
    hop-by-hop ones (dropped anyway); resolved once per distinct value ("keep-alive" lists
    none that are not hop-by-hop already)."""
    tokens = (token.strip().lower() for token in value.split(b","))
    return frozenset(token for token in tokens if token) - HOP_BY_HOP


class HeaderPolicy:
    """The per-config part of header rewriting, computed once."""

    def __init__(self, identity: IdentityHeaders, assertion: str = AssertionConfig.header) -> None:
        #: identity and assertion header names, lower-case with "-", as a client might send them
        self._identity_keys = frozenset(
            name.lower().replace("_", "-").encode("latin-1")
            for name in (*identity.names(), assertion)
        )
        self._names = tuple(name.encode("latin-1") for name in identity.names())
        actions = dict.fromkeys(HOP_BY_HOP | self._identity_keys, _DROP)
        actions.update(dict.fromkeys(FORWARDED, _FORWARDED))
        actions.update(dict.fromkeys(OVERRIDE_HEADERS, _OVERRIDE))
        actions.update(
            {
                b"connection": _CONNECTION,
                b"transfer-encoding": _CHUNKED,
                b"expect": _EXPECT,
                b"host": _HOST,
                b"authorization": _AUTHORIZATION,
                b"dpop": _DPOP,
                b"content-length": _LENGTH,
                REQUEST_ID: _ID,
            }
        )
        self._actions = actions

    def split_request(self, raw: list[Header]) -> IncomingHeaders:
        incoming = IncomingHeaders()
        kept = incoming.kept
        actions = self._actions
        connection: bytes | None = None
        for header in raw:
            name = header[0]
            action = actions.get(name)
            if action is None:
                if UNDERSCORE in name:  # a spelling some servers read with "-" for "_"
                    folded = name.replace(b"_", b"-")
                    if folded in self._identity_keys:
                        continue
                    if folded in OVERRIDE_HEADERS:
                        incoming.method_overrides += (header,)
                        continue
                kept.append(header)
            elif action == _LENGTH:
                incoming.has_body = header[1] != b"0"
                kept.append(header)
            elif action == _AUTHORIZATION:
                incoming.authorization.append(header[1].decode("latin-1"))
            elif action == _HOST:
                incoming.host = header[1]
            elif action == _FORWARDED:
                incoming.forwarded.setdefault(name, []).append(header[1].decode("latin-1"))
            elif action == _CONNECTION:
                connection = header[1] if connection is None else connection + b"," + header[1]
            elif action == _CHUNKED:
                incoming.has_body = True
            elif action == _ID:
                incoming.request_id = header[1] if incoming.request_id is None else b""
            elif action == _EXPECT and header[1].strip().lower() == b"100-continue":
                kept.append((b"expect", b"100-continue"))
            elif action == _OVERRIDE:
                incoming.method_overrides += (header,)
            elif action == _DPOP:
                incoming.dpop.append(header[1].decode("latin-1"))
        if connection is not None:
            dropped = named_by_connection(connection)
            if dropped:
                incoming.kept = [h for h in kept if h[0] not in dropped]
                if b"authorization" in dropped:
                    incoming.authorization = []
                if b"dpop" in dropped:
                    incoming.dpop = []
                for name in dropped & FORWARDED:
                    incoming.forwarded.pop(name, None)
                incoming.method_overrides = tuple(
                    h for h in incoming.method_overrides if h[0] not in dropped
                )
        return incoming

    def identity(self, token: AccessToken) -> list[Header]:
        """The identity headers vouched for by ``token`` (built once per verified token)."""
        derived = token.derived
        if derived is not None and derived[0] is self:
            headers: list[Header] = derived[1]
            return headers
        user, email, client_id, scopes = self._names
        values = [(user, token.sub), (client_id, token.client_id)]
        if token.email:
            values.append((email, token.email))
        values.append((scopes, token.scope))
        for _, value in values:
            if not value.isprintable():
                raise InvalidToken("claims cannot be sent as headers")
        headers = [(name, value.encode("utf-8")) for name, value in values]
        token.derived = (self, headers)
        return headers


def response_headers(raw: list[Header], request_id: bytes) -> tuple[list[Header], int]:
    """The upstream's response headers (names lower-case) minus hop-by-hop ones and the
    ``Set-Cookie`` fields ``refused``, with the request's ``X-Request-Id``; and how many
    ``Set-Cookie`` fields were dropped."""
    kept = []
    connection: bytes | None = None
    cookies_dropped = 0
    for header in raw:
        if header[0] not in _RESPONSE_SPECIAL:
            kept.append(header)
        elif header[0] == SET_COOKIE:
            if refused(header[1]):
                cookies_dropped += 1
            else:
                kept.append(header)
        elif header[0] == b"connection":
            connection = header[1] if connection is None else connection + b"," + header[1]
    if connection is not None:
        named = named_by_connection(connection)
        if named:
            kept = [header for header in kept if header[0] not in named]
    kept.append((REQUEST_ID, request_id))
    return kept, cookies_dropped
