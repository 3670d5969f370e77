"""Authlib's authorization server, adapted to Starlette.

Authlib has no Starlette server integration; this is the thin adapter its Flask one models: an
``AuthorizationServer`` subclass given ``query_client`` and ``save_token``, rendering Authlib's
answers as Starlette responses. It holds only what Authlib's core asks of a server (the client
lookup, token storage, token generators, grants and responses); the grants are registered with
their own collaborators bound (``gateway.issuer.grants``), and the endpoints are given theirs.
Requests are always built by the caller (``gateway.issuer.oauth_request``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import UnsupportedResponseTypeError
from starlette.responses import Response

from gateway.issuer import clientauth
from gateway.issuer.client_assertions import ClientAssertions
from gateway.issuer.oauth_request import OAuthRequest
from gateway.models import Client

#: RFC 6749 §5.1 and RFC 7009/7662 responses carry credentials: never cache them
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


class ResponseTypeNotSupported(UnsupportedResponseTypeError):
    """Authlib's, whose description quotes the request's ``response_type`` (into the error
    page and the redirect back): a fixed one instead."""

    def __init__(self, redirect_uri: str | None) -> None:
        super().__init__(None, "The response type is not supported.", redirect_uri=redirect_uri)

    def get_error_description(self) -> str:
        return str(self.description)


class Server(AuthorizationServer):
    """``query_client``: the client by its id (``records.ClientLookup``); ``save_token``: stores
    what a token response hands out (``tokens.TokenStore``); ``assertions``: the checker of
    ``private_key_jwt`` client assertions (None: that method always fails)."""

    def __init__(
        self,
        query_client: Callable[[str], Client | None],
        save_token: Callable[[dict[str, Any], OAuthRequest], None],
        assertions: ClientAssertions | None = None,
    ) -> None:
        super().__init__()
        self._query_client = query_client
        self._save_token = save_token
        self.assertions = assertions

    def query_client(self, client_id: str) -> Client | None:
        return self._query_client(client_id)

    def save_token(self, token: dict[str, Any], request: OAuthRequest) -> None:
        self._save_token(token, request)

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        """One method per request, never a fall-through (``gateway.issuer.clientauth``)."""
        return clientauth.authenticate(
            self.query_client, request, methods, endpoint, self.assertions
        )

    def get_authorization_grant(self, request: OAuthRequest) -> Any:
        try:
            return super().get_authorization_grant(request)
        except UnsupportedResponseTypeError as error:
            raise ResponseTypeNotSupported(error.redirect_uri) from None

    def create_oauth2_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def create_json_request(self, request: Any) -> Any:  # pragma: no cover - no JSON endpoints
        raise NotImplementedError

    def validate_requested_scope(self, scope: str | None) -> None:
        """Replaced per grant by ``ClientScopes``: the client's scope is the limit."""

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        headers = [(k, v) for k, v in headers if k.lower() not in ("cache-control", "pragma")]
        headers += NO_STORE
        if isinstance(body, dict):
            if body.get("error") == "invalid_client":
                # RFC 6749 §5.2: failed client authentication may (and with HTTP Basic must)
                # answer 401 with a challenge; we always do, so clients learn the scheme.
                status = 401
                headers = [(k, v) for k, v in headers if k.lower() != "www-authenticate"]
                headers.append(("WWW-Authenticate", 'Basic realm="gateway"'))
            return Response(json.dumps(body), status, dict(headers), media_type="application/json")
        return Response(body or b"", status, dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's hook for Flask-style signals; nothing listens here."""
