"""The four grants, as Authlib subclasses backed by our storage.

Authlib does the RFC 6749 request validation; these classes supply storage, the
``Principal`` each token is issued to, and the rules Authlib leaves to us: PKCE S256 only and
mandatory for public clients, code replay and refresh-token reuse detection, password-guessing
throttles, and an identical answer for an unknown user and a wrong password.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge

from gateway.issuer.idtoken import MAX_NONCE_LENGTH
from gateway.issuer.records import credentials_grant, load_refresh_token
from gateway.issuer.server import (
    CLIENT_AUTH_METHODS,
    CONFIDENTIAL_AUTH_METHODS,
    MAX_CREDENTIAL_LENGTH,
    ClientScopes,
)
from gateway.issuer.tokens import Principal, successor_token
from gateway.keys import session_secret
from gateway.models import AuthorizationCode, RefreshToken, sha256
from gateway.throttle import TooManyAttempts


class PKCE(CodeChallenge):
    """RFC 7636 with S256 only (RFC 9700 §2.1.1), required whenever the client is public."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - Authlib's attribute

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if grant.request.client.is_public and not data.get("code_challenge"):
            raise InvalidRequestError("Public clients must send a PKCE 'code_challenge'.")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            # an omitted method means "plain" (RFC 7636 §4.3), which is refused
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(ClientScopes, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: Any) -> str:
        """Authlib's check, without quoting the request's URI into the error page."""
        uri = request.payload.redirect_uri
        if uri and not client.check_redirect_uri(uri):
            raise InvalidRequestError("The redirect URI is not registered for this client.")
        redirect_uri: str = grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(
            request, client
        )
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        principal: Principal = request.user
        if principal.user is None:  # the pages only authorize signed-in users
            raise InvalidRequestError("No signed-in user.")
        payload = request.payload
        ttl = self.server.config.tokens.authorization_code_ttl
        with self.server.storage.session() as session:
            session.add(
                AuthorizationCode(
                    code_hash=sha256(code),
                    client_id=request.client.client_id,
                    user_id=principal.user.id,
                    redirect_uri=payload.redirect_uri,
                    scope=request.scope,
                    code_challenge=payload.data.get("code_challenge"),
                    code_challenge_method=payload.data.get("code_challenge") and "S256",
                    auth_time=principal.auth_time,
                    nonce=payload.data.get("nonce") or None,
                    session_id=principal.session_id,
                    expires_at=time.time() + ttl,
                    grant_id=principal.grant_id,
                )
            )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        if len(code) > MAX_CREDENTIAL_LENGTH:
            return None
        with self.server.storage.session() as session:
            found = session.scalar(
                sa.select(AuthorizationCode).where(AuthorizationCode.code_hash == sha256(code))
            )
        if found is None or found.client_id != client.client_id:
            return None
        if found.used_at is not None:
            # RFC 6749 §4.1.2: a second use SHOULD revoke what the code gave
            revoker = self.server.revoker
            revoker.revoke(lambda s: revoker.grants(s, [found.grant_id]))
            return None
        if found.expires_at <= time.time():
            return None
        return found

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Kept, marked used, until it expires: a replay must still be recognised."""

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        nonce = self.request.payload.data.get("nonce")
        if nonce is not None and len(nonce) > MAX_NONCE_LENGTH:
            raise InvalidRequestError(
                f"The 'nonce' parameter may have at most {MAX_NONCE_LENGTH} characters.",
                redirect_uri=redirect_uri,
            )
        return redirect_uri

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Principal:
        return Principal(
            authorization_code.user,
            authorization_code.grant_id or "",
            authorization_code.auth_time,
            session_id=authorization_code.session_id,
            nonce=authorization_code.nonce,
        )


class Throttled(InvalidGrantError):
    """RFC 6749 §5.2 ``invalid_grant``, the answer for a wrong password too, plus when to retry
    (RFC 9110 §10.2.3); the same for an unknown user."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many failed attempts; try again later.")
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


class PasswordGrant(ClientScopes, grants.ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def authenticate_user(self, username: str, password: str) -> Principal:
        try:
            user = self.server.check_password(username, password, self.request.client_addr)
        except TooManyAttempts as refused:
            raise Throttled(refused.retry_after) from None
        if user is None:
            # one answer for an unknown user and a wrong password
            raise InvalidGrantError("Invalid username or password.")
        return Principal.new(user, time.time())


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    @property
    def INCLUDE_NEW_REFRESH_TOKEN(self) -> bool:  # Authlib reads it per request
        return bool(self.server.config.tokens.rotate_refresh_tokens)

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        if len(refresh_token) > MAX_CREDENTIAL_LENGTH:
            return None
        token_hash = sha256(refresh_token)
        token = self.server.storage.read(lambda conn: load_refresh_token(conn, token_hash))
        if token is None:
            return None
        now = time.time()
        grace = self.server.config.tokens.refresh_reuse_grace
        if token.rotated_at is not None and now - token.rotated_at > grace:
            # RFC 9700 §4.14.2: a rotated refresh token presented again means it leaked.
            # (Within the grace, ``persist_token`` decides: the same successor, or reuse.)
            revoker = self.server.revoker
            revoker.revoke(lambda s: revoker.grants(s, [token.grant_id]))
            return None
        if token.expires_at <= now or token.grant.revoked_at is not None:
            return None
        return token

    def authenticate_user(self, refresh_token: RefreshToken) -> Principal:
        grant = refresh_token.grant
        return Principal(
            grant.user, grant.id, grant.auth_time, existing=grant, session_id=grant.session_id
        )

    def issue_token(self, user: Principal, refresh_token: RefreshToken) -> dict[str, Any]:
        """With a reuse grace, the new refresh token is derived from the presented one, so a
        second presentation within the grace computes the same (``successor_token``)."""
        token: dict[str, Any] = super().issue_token(user, refresh_token)
        if "refresh_token" in token and self.server.config.tokens.refresh_reuse_grace:
            # read at each use: every replica derives with the secret on disk now
            secret = session_secret(self.server.config.keys_dir)
            token["refresh_token"] = successor_token(secret, self.request.form["refresh_token"])
        return token

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Done by ``persist_token`` in the transaction that stores the new one."""


class ClientCredentialsGrant(ClientScopes, grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included", and nothing is stored:
        the token's grant is its client's own (see ``persist_token``)."""
        client = self.request.client
        principal = Principal(None, credentials_grant(self.server.storage, client))
        self.request.user = principal
        token = self.generate_token(
            user=principal, scope=self.request.payload.scope, include_refresh_token=False
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER
