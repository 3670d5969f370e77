"""Protected resource metadata (RFC 9728): what a client learns about a resource it was refused.

Each resource the routes make (``gateway.resources``) publishes its document at the
path-inserted well-known URL (RFC 9728 §3.1): ``https://api.example.com/mcp`` at
``/.well-known/oauth-protected-resource/mcp``, an identifier without a path at
``/.well-known/oauth-protected-resource`` itself. When resources on different hosts share a
path, the request's ``Host`` picks one (``Resources.at``). The path is compared as the client
sent it (percent-encoded), as the identifier is written.

RFC 9728 §3.2: "the response MUST use the 200 OK status code and return a JSON object using
the application/json content type". The documents are built once at start (they depend on
the config alone) and may be cached for five minutes. ``HEAD`` has ``GET``'s headers and no
body; a path that names no resource is 404, another method 405 with ``Allow``, both as the
gateway's JSON errors. The ``resource_metadata`` challenge parameter (§5.1) that points
clients here is built from the identifier in ``gateway.errors``, never from this request.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.context import raw_path
from gateway.errors import GatewayError, MethodNotAllowed, RouteNotFound
from gateway.resources import METADATA_PREFIX, Resources

_METHODS = ("GET", "HEAD")
_CACHE_CONTROL = (b"cache-control", b"max-age=300")
_CONTENT_TYPE = (b"content-type", b"application/json")
_HOST = b"host"


def is_metadata_path(path: str) -> bool:
    """``path`` is at or below the well-known prefix (what this endpoint answers for)."""
    return path == METADATA_PREFIX or path.startswith(METADATA_PREFIX + "/")


class ResourceMetadataEndpoint:
    """The raw ASGI app for ``/.well-known/oauth-protected-resource`` and below it."""

    def __init__(self, resources: Resources, issuer: str) -> None:
        self._resources = resources
        #: identifier -> the encoded document
        self._documents = {r.identifier: json.dumps(r.metadata(issuer)).encode() for r in resources}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        head = scope["method"] == "HEAD"
        try:
            body = self.document(scope)
        except GatewayError as exc:
            status, headers, payload = exc.response_parts()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if head else payload})
            return
        headers = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode()), _CACHE_CONTROL]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    def document(self, scope: dict[str, Any]) -> bytes:
        """The document a request asks for; ``MethodNotAllowed`` or ``RouteNotFound``."""
        if scope["method"] not in _METHODS:
            raise MethodNotAllowed(list(_METHODS))
        hosts = [value for name, value in scope["headers"] if name == _HOST]
        host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
        path = raw_path(scope).decode("latin-1")
        resource = self._resources.at(path, host)
        if resource is None:
            raise RouteNotFound("no protected resource publishes its metadata at this path")
        return self._documents[resource.identifier]
