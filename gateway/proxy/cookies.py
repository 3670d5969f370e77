"""``Set-Cookie`` fields from upstreams that could set or clear the gateway's own cookies.

A route on the issuer's host serves its upstream's responses on the gateway's origin, and the
browser files their cookies under that host: ``Set-Cookie: gateway_session=...; Path=/oauth``
from an upstream replaced the login session (issue 15 §3). The proxy drops (``refused``) every
upstream ``Set-Cookie`` field that

- names a cookie the gateway uses (``GATEWAY_COOKIES``): compared case-insensitively, after
  trimming whitespace and double quotes (browsers compare names exactly, but a server reading
  a ``Cookie`` header may fold them: Starlette strips every Unicode space). A nameless cookie
  counts by the name its value reads as: RFC 6265bis ("The Set-Cookie Header Field", step 3)
  makes ``Set-Cookie: gateway_session`` or ``Set-Cookie: =gateway_session=x`` a cookie with an
  empty name, which the browser sends back as its bare value, ``gateway_session=x``;
- or has a ``Path`` attribute under ``/oauth`` or ``/.well-known`` (``/oauth``, ``/oauth/``,
  ``/oauth/token``; not ``/oauthx``, not ``/``): a cookie sent to the gateway's own paths
  only, where it is of no use to the upstream. Attribute names are compared case-insensitively
  after trimming (RFC 6265 §5.2); the value is trimmed, unquoted and percent-decoded, stricter
  than browsers (which take quotes and escapes literally, §5.2.4). A browser keeps the last
  ``Path`` (§5.3 step 7); any one of them under those paths drops the field, so no reading of
  it gets through.

A cookie with no ``Path``, or one not starting with "/", gets the request's default-path
(§5.1.4): the proxy never serves a path under the gateway's own (those are the issuer's), so
such a cookie can only be the gateway's by its name. ``Domain`` changes neither rule.

Each distinct field is parsed once (a bounded cache): the response path pays a set probe per
header, and only ``Set-Cookie`` fields cost more (``gateway.proxy.headers.response_headers``).
"""

from __future__ import annotations

import functools
from urllib.parse import unquote

from gateway.issuer.devices import DEVICE_COOKIE
from gateway.issuer.session import COOKIE as SESSION_COOKIE

#: every cookie the gateway sets, by name
GATEWAY_COOKIES = frozenset({SESSION_COOKIE, DEVICE_COOKIE})
#: the gateway's own paths: no upstream cookie may be scoped to them
GATEWAY_PATHS = ("/oauth", "/.well-known")

_NAMES = frozenset(name.lower() for name in GATEWAY_COOKIES)


@functools.lru_cache(maxsize=256)  # the values come from upstreams: bounded
def refused(field: bytes) -> bool:
    """Whether the upstream ``Set-Cookie`` field ``field`` would set or clear a cookie of the
    gateway's, or one scoped to its paths."""
    text = field.decode("latin-1")
    pair, _, attributes = text.partition(";")
    name, equals, value = pair.partition("=")
    if not equals:  # no "=": a nameless cookie whose value is the whole pair
        name, value = "", pair
    if not _bare(name):
        name = value.partition("=")[0]  # sent back bare: "a=b" in it reads as cookie a
    if _bare(name).lower() in _NAMES:
        return True
    for attribute in attributes.split(";"):
        key, _, path = attribute.partition("=")
        if key.strip().lower() == "path" and _under_gateway_paths(unquote(_bare(path))):
            return True
    return False


def _bare(text: str) -> str:
    return text.strip().strip('"').strip()


def _under_gateway_paths(path: str) -> bool:
    """Whether the cookie path ``path``, read as a request path, path-matches one of the
    gateway's own paths (RFC 6265 §5.1.4): the cookie would be sent to them alone."""
    return any(path == own or path.startswith(own + "/") for own in GATEWAY_PATHS)
