"""The client's own failures, as a tree (the caller maps them to its own errors in one place:
the gateway's ``Forwarder``, as httpx's ``map_httpcore_exceptions`` does for httpcore)::

    Http1Error            every failure the client decides on itself
    ├── RequestError      a request that must not be sent: CR, LF or NUL in a field or the
    │                     target, a caller's Host or Transfer-Encoding, a bad Content-Length
    ├── ProtocolError     a response breaks RFC 9112, or a request body its Content-Length
    ├── ConnectTimeout    no connection, or no free slot in the pool, within connect_timeout
    └── IncompleteBody    the response body broke off before its end (the reason: __cause__)

What the operating system reports passes as it is: ``OSError`` (refused, reset, unreachable)
and ``ssl.SSLError`` (a certificate that does not verify) while the request is sent and its
response head awaited.
"""

from __future__ import annotations


class Http1Error(Exception):
    """A failure of this client."""


class RequestError(Http1Error):
    """The request cannot be sent as given (``request.prepare`` refuses it)."""


class ProtocolError(Http1Error):
    """A message breaks RFC 9112: the upstream's response, or the request body's length."""


class ConnectTimeout(Http1Error, TimeoutError):
    """No connection to the upstream (or no free slot in its pool) within connect_timeout."""


class IncompleteBody(Http1Error):
    """The response body ended before its framing said it would, or was closed first."""
