"""The issuer's form-posting JSON endpoints: token (RFC 6749 §3.2), revocation (RFC 7009) and
introspection (RFC 7662).

Each reads the form first (``RequestReader``), then runs Authlib's sync world in the threadpool;
an ``OAuth2Error`` from either becomes the server's JSON error. These are ours, not Authlib's
``rfc7009.RevocationEndpoint`` / ``rfc7662.IntrospectionEndpoint``: a JWT is revoked by its
``jti`` and introspected against the database's revocations, which Authlib's do not do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from gateway.errors import InvalidToken
from gateway.introspect.revocation import revoked_in_database
from gateway.introspect.revoker import Revoker
from gateway.introspect.validator import BearerValidator
from gateway.issuer.clientauth import CLIENT_AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS
from gateway.issuer.dpop_tokens import TokenRequestProof
from gateway.issuer.oauth_request import OAuthRequest, RequestReader
from gateway.issuer.records import load_refresh_token, revoke_family
from gateway.issuer.scopes import releases_email
from gateway.issuer.server import NO_STORE, Server
from gateway.metrics import Metrics
from gateway.models import Grant, RefreshToken, sha256
from gateway.storage import Storage


class FormEndpoint:
    """What the three share: the form read, then a sync handler run in the threadpool."""

    def __init__(self, server: Server, reader: RequestReader) -> None:
        self.server = server
        self.reader = reader

    async def _handle(
        self, http: HTTPRequest, handler: Callable[[OAuthRequest], Response]
    ) -> Response:
        try:
            request = await self.reader.read(http, query=False)
            return await run_in_threadpool(handler, request)
        except OAuth2Error as error:
            return self.server.handle_error_response(None, error)


def find_refresh_token(storage: Storage, token: str) -> RefreshToken | None:
    token_hash = sha256(token)
    return storage.read(lambda conn: load_refresh_token(conn, token_hash))


class TokenEndpoint(FormEndpoint):
    """RFC 6749 §3.2: every grant's tokens are issued here, and only here. ``proof``: the DPoP
    proof a request may carry (RFC 9449), checked before the grant runs, so that a refused one
    leaves no trace; the grants bind what they issue to its key (``dpop_tokens``)."""

    def __init__(
        self, server: Server, reader: RequestReader, metrics: Metrics, proof: TokenRequestProof
    ) -> None:
        super().__init__(server, reader)
        self.metrics = metrics
        self.proof = proof

    async def token(self, http: HTTPRequest) -> Response:
        return await self._handle(http, self._token)

    def _token(self, request: OAuthRequest) -> Response:
        request.dpop_jkt = self.proof.thumbprint(request)
        response = self.server.create_token_response(request)
        if response.status_code == 200:
            self.metrics.token_issued(request.payload.grant_type)
            response.headers.update(self.proof.nonce_headers())
        return response


class RevocationEndpoint(FormEndpoint):
    """RFC 7009: an access token is revoked by its ``jti``, a refresh token with its grant."""

    def __init__(
        self,
        server: Server,
        reader: RequestReader,
        validator: BearerValidator,
        revoker: Revoker,
        storage: Storage,
    ) -> None:
        super().__init__(server, reader)
        self.validator = validator
        self.revoker = revoker
        self.storage = storage

    async def revoke(self, http: HTTPRequest) -> Response:
        return await self._handle(http, self._revoke)

    def _revoke(self, request: OAuthRequest) -> Response:
        client = self.server.authenticate_client(request, CLIENT_AUTH_METHODS, "revocation")
        token = request.form.get("token")
        if not token:
            raise InvalidRequestError("Missing 'token' parameter.")
        revoker = self.revoker
        # RFC 7009 §2.1: the hint may be wrong; we look everywhere, cheapest guess first
        try:
            claims = self.validator.verify_signature(token)
        except InvalidToken:
            claims = None
        if claims is not None:
            exp = claims.get("exp")
            if claims.get("client_id") == client.client_id and isinstance(exp, int | float):
                jti = str(claims.get("jti", ""))
                if jti and exp + revoker.leeway > time.time():
                    revoker.revoke(lambda s: revoker.jti(s, jti, exp))
        else:
            refresh = find_refresh_token(self.storage, token)
            if refresh is not None and refresh.client_id == client.client_id:
                # RFC 7009 §2.1: revoking a refresh token drops its access tokens too
                revoke_family(revoker, refresh.grant_id)
        # unknown, expired or foreign tokens: 200 and nothing changes (RFC 7009 §2.2)
        return Response(b"", 200, dict(NO_STORE))


class IntrospectionEndpoint(FormEndpoint):
    """RFC 7662, for confidential clients registered with ``can_introspect``. ``issuer``: a
    refresh token's ``iss`` and ``aud`` (it is redeemed here, nowhere else)."""

    def __init__(
        self,
        server: Server,
        reader: RequestReader,
        validator: BearerValidator,
        storage: Storage,
        issuer: str,
    ) -> None:
        super().__init__(server, reader)
        self.validator = validator
        self.storage = storage
        self.issuer = issuer

    async def introspect(self, http: HTTPRequest) -> Response:
        return await self._handle(http, self._introspect)

    def _introspect(self, request: OAuthRequest) -> Response:
        client = self.server.authenticate_client(
            request, CONFIDENTIAL_AUTH_METHODS, "introspection"
        )
        if not client.can_introspect:
            return self.server.handle_response(
                403,
                {
                    "error": "unauthorized_client",
                    "error_description": "This client may not introspect tokens.",
                },
                [],
            )
        token = request.form.get("token")
        if not token:
            raise InvalidRequestError("Missing 'token' parameter.")
        body = self._access_token_info(token) or self._refresh_token_info(token)
        return self.server.handle_response(200, body or {"active": False}, [])

    def _access_token_info(self, token: str) -> dict[str, Any] | None:
        try:
            access = self.validator.validate(token, audience=None)
        except InvalidToken:
            return None
        # the in-memory sets may trail other replicas by a sync interval; ask the database
        revoked = self.storage.read(
            lambda conn: revoked_in_database(conn, access.jti, access.sid, access.sub, access.iat)
        )
        if revoked:
            return None
        claims = access.claims
        info = {
            "active": True,
            "scope": claims.get("scope", ""),
            "client_id": access.client_id,
            "sub": access.sub,
            "exp": access.exp,
            "iat": access.iat,
            "iss": claims["iss"],
            "aud": claims["aud"],
            "jti": access.jti,
            # RFC 9449 §6.2: a bound token's key, and its type
            "token_type": "Bearer" if access.jkt is None else "DPoP",
        }
        if access.jkt is not None:
            info["cnf"] = {"jkt": access.jkt}
        if access.email:
            info["username"] = access.email
        return info

    def _refresh_token_info(self, token: str) -> dict[str, Any] | None:
        refresh = find_refresh_token(self.storage, token)
        if refresh is None or refresh.rotated_at is not None:
            return None
        grant: Grant = refresh.grant
        if grant.revoked_at is not None or refresh.expires_at <= time.time():
            return None
        info = {
            "active": True,
            "scope": refresh.scope,
            "client_id": refresh.client_id,
            "sub": grant.user.subject if grant.user else refresh.client_id,
            "exp": int(refresh.expires_at),
            "iat": int(refresh.created_at),
            "iss": self.issuer,
            "aud": self.issuer,
            "token_type": "refresh_token",
        }
        if grant.user and releases_email(refresh.scope.split()):
            info["username"] = grant.user.email
        return info
