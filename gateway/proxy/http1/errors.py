"""The client's own failures; ``Forwarder`` turns them into ``UpstreamUnavailable`` (502) or
``UpstreamTimeout`` (504), with the original as ``__cause__`` for the log."""

from __future__ import annotations


class ProtocolError(Exception):
    """A message breaks RFC 9112: the upstream's response, or a request that cannot be sent."""


class ConnectTimeout(TimeoutError):
    """No connection to the upstream (or no free slot in its pool) within connect_timeout."""
