"""The authorization request's checks (RFC 6749 §4.1.1, RFC 7636, RFC 8707, OpenID Connect
Core §3.1.2.1), in one place for both doors that take a request: ``/oauth/authorize`` and the
pushed authorization request endpoint (RFC 9126 §2.1: "the authorization server MUST process
the request as it would an authorization request")."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error

from gateway.issuer.oauth_request import OAuthRequest
from gateway.issuer.prompt import Prompt, parse_prompt, refuse_unsupported
from gateway.issuer.server import Server


class AuthorizationRequestCheck:
    """What ``/oauth/authorize`` checks of a request before any page, in one place: Authlib's
    validation with our grant's (client, redirect URI, response type, scope, PKCE, ``nonce``,
    ``resource``), the parameters of features not served, ``prompt`` and ``max_age``."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def check(self, request: OAuthRequest) -> tuple[Any, Prompt]:
        """The grant, validated, and the prompt; raises ``OAuth2Error`` (with the redirect URI
        once it is trusted)."""
        grant = self.server.get_consent_grant(request)
        data = request.payload.data
        try:
            refuse_unsupported(data, grant.redirect_uri)
            prompt = parse_prompt(data.get("prompt"), data.get("max_age"), grant.redirect_uri)
        except OAuth2Error as error:
            error.state = request.payload.state
            raise
        return grant, prompt
