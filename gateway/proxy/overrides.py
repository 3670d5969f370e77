"""Method overrides: the method an upstream acts on may not be the request's.

Web frameworks let a POST stand for the method named in ``X-HTTP-Method-Override``,
``X-HTTP-Method`` or ``X-Method-Override`` (Rack's ``MethodOverride``, Express's
``method-override``, Symfony, ASP.NET Core, gorilla/handlers: on a POST only, the value
upper-cased). A gateway that checks the scopes of the POST while the upstream performs a DELETE
has decided on another request. So, in the decision core, for both doors:

- a value that is not an HTTP method token (RFC 9110 §9.1), or two different values, is refused
  (400; 403 at ``/decisions``), whatever the route;
- an override is honoured on a POST whose route sets ``allow_method_override`` when the route
  for the overriding method sets it too: the request is then decided as that method (its route,
  its scopes, its upstream), and the proxy passes the header on, spelled with ``-`` and the
  method upper-cased, so the upstream acts on exactly the method that was checked;
- any other override is not honoured: the proxy drops the headers (the upstream then performs
  the method that was checked); ``/decisions`` refuses the request (403), since the edge forwards
  them whatever the answer, and it refuses a spelling with ``_`` even where overrides are
  honoured (whether an upstream reads ``x_http_method`` as ``X-HTTP-Method`` is its own guess).

The names are matched in any case and with ``_`` for ``-``, as identity headers are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.errors import BadMethodOverride

#: the override headers, as frameworks spell them
OVERRIDE_NAMES = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
#: the same, as the ASGI server gives header names: lower-case
OVERRIDE_HEADERS = frozenset(name.lower().encode("ascii") for name in OVERRIDE_NAMES)
#: RFC 9110 §9.1: a method is a token
METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: the only method frameworks let an override replace
OVERRIDABLE = "POST"


def overriding_method(values: Iterable[bytes]) -> str:
    """The one method the override headers' ``values`` name, upper-cased;
    ``BadMethodOverride`` when one is not a method or two differ."""
    methods = set()
    for value in values:
        method = value.decode("latin-1")
        if not METHOD.fullmatch(method):
            raise BadMethodOverride()
        methods.add(method.upper())  # a token is ASCII: upper() cannot make it another token
    if len(methods) != 1:
        raise BadMethodOverride()
    return methods.pop()
