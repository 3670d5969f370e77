"""The issuer's JSON endpoints: token (RFC 6749 §3.2), revocation (RFC 7009), introspection
(RFC 7662), authorization server metadata (RFC 8414) and OpenID Connect Discovery 1.0, built
from it, and the JWKS (RFC 7517)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response

from gateway.config import GRANT_TYPES
from gateway.errors import InvalidToken
from gateway.introspect.revocation import revoked_in_database
from gateway.issuer.idtoken import CLAIMS_SUPPORTED, OIDC_SCOPES
from gateway.issuer.prompt import PROMPT_VALUES, RESPONSE_MODES
from gateway.issuer.records import load_refresh_token
from gateway.issuer.scopes import releases_email
from gateway.issuer.server import (
    CLIENT_AUTH_METHODS,
    CONFIDENTIAL_AUTH_METHODS,
    NO_STORE,
    NQSCHAR,
    VSCHAR,
    Request,
    Server,
)
from gateway.metrics import Metrics
from gateway.models import Client, Grant, RefreshToken, sha256

FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 64
#: a token request is a few hundred bytes; no parameter we read comes near this
MAX_FORM_BYTES = 1 << 20

#: parameters whose syntax Appendix A (and RFC 7636 §4.1-4.3) limits to printable ASCII
ASCII_PARAMETERS = {
    "client_id": VSCHAR,
    "client_secret": VSCHAR,
    "state": VSCHAR,
    # not limited by OpenID Connect Core §3.1.2.1, but echoed into ID tokens and stored: as
    # ``state``, printable ASCII (what every client's random nonce is)
    "nonce": VSCHAR,
    "code": VSCHAR,
    "refresh_token": VSCHAR,
    "code_verifier": VSCHAR,
    "code_challenge": VSCHAR,
    "response_type": NQSCHAR,
    "grant_type": NQSCHAR,
    "scope": NQSCHAR,
    "redirect_uri": NQSCHAR,
    "code_challenge_method": NQSCHAR,
}


def _check_syntax(items: list[tuple[str, str]]) -> None:
    for name, value in items:
        allowed = ASCII_PARAMETERS.get(name)
        if allowed is not None and not allowed.issuperset(value):
            raise InvalidRequestError(f"The '{name}' parameter has characters it may not hold.")


async def _read_body(http: HTTPRequest) -> bytes:
    chunks, size = [], 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise InvalidRequestError("The request body is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body (RFC 6749 Appendix B) as name-value pairs,
    in order, repeats kept: split on "&" (empty pieces skipped), each at its first "=" (none:
    an empty value), then "+" and %XX decoded, the escapes as UTF-8 with invalid sequences
    replaced. What Starlette's form parser (python-multipart) returns, in a fifth of the time:
    raw non-ASCII bytes are read as Latin-1 there too."""
    pairs = [pair for pair in body.decode("latin-1").split("&") if pair]
    if len(pairs) > MAX_FORM_FIELDS:
        raise InvalidRequestError("The request body has too many parameters.")
    return [
        (unquote_plus(name), unquote_plus(value))
        for name, _, value in (pair.partition("=") for pair in pairs)
    ]


async def oauth_request(
    http: HTTPRequest, server: Server, *, query: bool, form: bool = True
) -> Request:
    """Read the form and/or the query string into Authlib's shape.

    Raises ``InvalidRequestError`` for a body that is not a form or repeats a parameter
    (RFC 6749 §3.1, §3.2: parameters MUST NOT be included more than once)."""
    fields: list[tuple[str, str]] = []
    if form and http.method == "POST":
        ctype = http.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != FORM:
            raise InvalidRequestError(f"The request body must be {FORM}.")
        fields = parse_form(await _read_body(http))
    args = list(http.query_params.multi_items()) if query else []
    _check_syntax(args + fields)
    # the public URL, not the one a TLS-terminating proxy forwarded to
    uri = server.config.issuer.rstrip("/") + http.url.path
    if http.url.query:
        uri += "?" + http.url.query
    request = Request(
        http.method,
        uri,
        http.headers,
        args,
        fields,
        server.forwarded.client_address(
            http.client.host if http.client else None, http.headers.getlist("x-forwarded-for")
        ),
    )
    if request.payload.has_repeats():  # not named: a name is the request's words
        raise InvalidRequestError("A parameter is repeated.")
    return request


def error_response(server: Server, error: OAuth2Error) -> Response:
    status, body, headers = error()
    return server.handle_response(status, body, headers)


class IssuerEndpoints:
    def __init__(self, server: Server, metrics: Metrics) -> None:
        self.server = server
        self.metrics = metrics

    # --- RFC 6749 §3.2 ---------------------------------------------------------------------

    async def _handle(self, http: HTTPRequest, handler: Callable[[Request], Response]) -> Response:
        """Read the form, then run ``handler`` (sync, Authlib's world) in the threadpool."""
        try:
            request = await oauth_request(http, self.server, query=False)
            return await run_in_threadpool(handler, request)
        except OAuth2Error as error:
            return error_response(self.server, error)

    async def token(self, http: HTTPRequest) -> Response:
        return await self._handle(http, self._token)

    def _token(self, request: Request) -> Response:
        response = self.server.create_token_response(request)
        if response.status_code == 200:  # every grant's tokens are issued here, and only here
            self.metrics.token_issued(request.payload.grant_type)
        return response

    # --- RFC 7009 ----------------------------------------------------------------------------

    async def revoke(self, http: HTTPRequest) -> Response:
        return await self._handle(http, self._revoke)

    def _revoke(self, request: Request) -> Response:
        client = self.server.authenticate_client(request, CLIENT_AUTH_METHODS, "revocation")
        token = request.form.get("token")
        if not token:
            raise InvalidRequestError("Missing 'token' parameter.")
        revoker = self.server.revoker
        # RFC 7009 §2.1: the hint may be wrong; we look everywhere, cheapest guess first
        try:
            claims = self.server.validator.verify_signature(token)
        except InvalidToken:
            claims = None
        if claims is not None:
            exp = claims.get("exp")
            if claims.get("client_id") == client.client_id and isinstance(exp, int | float):
                jti = str(claims.get("jti", ""))
                if jti and exp + revoker.leeway > time.time():
                    revoker.revoke(lambda s: revoker.jti(s, jti, exp))
        else:
            refresh = self._refresh_token(token)
            if refresh is not None and refresh.client_id == client.client_id:
                # RFC 7009 §2.1: revoking a refresh token drops its access tokens too
                revoker.revoke(lambda s: revoker.grants(s, [refresh.grant_id]))
        # unknown, expired or foreign tokens: 200 and nothing changes (RFC 7009 §2.2)
        return Response(b"", 200, dict(NO_STORE))

    # --- RFC 7662 ----------------------------------------------------------------------------

    async def introspect(self, http: HTTPRequest) -> Response:
        return await self._handle(http, self._introspect)

    def _introspect(self, request: Request) -> Response:
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
            access = self.server.validator.validate(token, audience=None)
        except InvalidToken:
            return None
        # the in-memory sets may trail other replicas by a sync interval; ask the database
        revoked = self.server.storage.read(
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
            "token_type": "Bearer",
        }
        if access.email:
            info["username"] = access.email
        return info

    def _refresh_token_info(self, token: str) -> dict[str, Any] | None:
        refresh = self._refresh_token(token)
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
            "iss": self.server.config.issuer,
            "aud": self.server.config.issuer,
            "token_type": "refresh_token",
        }
        if grant.user and releases_email(refresh.scope.split()):
            info["username"] = grant.user.email
        return info

    def _refresh_token(self, token: str) -> RefreshToken | None:
        token_hash = sha256(token)
        return self.server.storage.read(lambda conn: load_refresh_token(conn, token_hash))

    # --- RFC 8414 and the JWKS -----------------------------------------------------------------

    async def metadata(self, http: HTTPRequest) -> Response:
        return self._cached(await run_in_threadpool(self._metadata))

    async def openid_configuration(self, http: HTTPRequest) -> Response:
        """OpenID Connect Discovery 1.0 §3: RFC 8414's document, and what OIDC adds to it."""
        body = await run_in_threadpool(self._metadata)
        issuer = self.server.config.issuer.rstrip("/")
        algorithms = self.server.keyring.algorithms
        body.update(
            {
                "userinfo_endpoint": f"{issuer}/oauth/userinfo",
                # RP-Initiated Logout 1.0 §2.1
                "end_session_endpoint": f"{issuer}/oauth/logout",
                "id_token_signing_alg_values_supported": algorithms,
                "subject_types_supported": ["public"],
                "claims_supported": CLAIMS_SUPPORTED,
                # OIDC Core §3.1.2.1; select_account is refused: one account per session
                "prompt_values_supported": list(PROMPT_VALUES),
                "claims_parameter_supported": False,
                "request_parameter_supported": False,
                # Discovery §3: omitted, it would mean true
                "request_uri_parameter_supported": False,
            }
        )
        return self._cached(body)

    @staticmethod
    def _cached(body: dict[str, Any]) -> Response:
        return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})

    def _metadata(self) -> dict[str, Any]:
        """RFC 8414 §2, the one source of both discovery documents."""
        issuer = self.server.config.issuer.rstrip("/")
        return {
            "issuer": self.server.config.issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "scopes_supported": self._scopes_supported(),
            "response_types_supported": ["code"],
            "response_modes_supported": list(RESPONSE_MODES),
            "grant_types_supported": list(GRANT_TYPES),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_AUTH_METHODS,
            "authorization_response_iss_parameter_supported": True,
            "access_token_signing_alg_values_supported": self.server.keyring.algorithms,
        }

    def _scopes_supported(self) -> list[str]:
        with self.server.storage.session() as session:
            client_scopes = session.scalars(sa.select(Client.scope)).all()
        scopes = {s for value in client_scopes for s in value.split()} | OIDC_SCOPES
        for route in self.server.config.routes:
            scopes.update(s for group in route.scopes for s in group)
        return sorted(scopes)

    async def jwks(self, http: HTTPRequest) -> Response:
        # short cache: a rotated key must reach verifiers before it signs (activation_delay)
        return Response(
            json.dumps(self.server.keyring.jwks()),
            headers={"Cache-Control": "public, max-age=60"},
            media_type="application/jwk-set+json",
        )
