"""The four grants, as Authlib subclasses backed by our storage.

Authlib does the RFC 6749 request validation; these classes supply storage, the
``Principal`` each token is issued to, and the rules Authlib leaves to us: PKCE S256 only and
mandatory for public clients, code replay detection, refresh-token rotation and reuse detection
(``gateway.issuer.rotation``), password-guessing throttles, an identical answer for an
unknown user and a wrong password, the resources each grant and token is for (RFC 8707,
``gateway.issuer.resource_indicators``), and the DPoP key each token, code and refresh token is
bound to (RFC 9449, ``gateway.issuer.dpop_tokens``).

Authlib makes a grant per request as ``grant_cls(request, server)``, so a grant sees only the
request and the server. What a grant uses beyond them is bound to its class when it is
registered (``PasswordGrant.bound(password_check)``): each names exactly what it needs, and the
server stays what Authlib's core asks of it.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Self, TypeVar, cast

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge

from gateway.introspect.revoker import Revoker
from gateway.issuer.clientauth import CLIENT_AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS
from gateway.issuer.dpop_tokens import (
    SenderConstrained,
    is_thumbprint,
    refresh_binding,
    require_key,
)
from gateway.issuer.idtoken import MAX_NONCE_LENGTH
from gateway.issuer.login import PasswordCheck
from gateway.issuer.oauth_request import MAX_CREDENTIAL_LENGTH, OAuthRequest
from gateway.issuer.principal import Principal
from gateway.issuer.records import credentials_grant, revoke_family
from gateway.issuer.resource_indicators import ResourceIndicators
from gateway.issuer.rotation import RefreshRotation
from gateway.models import AuthorizationCode, Client, RefreshToken, sha256
from gateway.storage import Storage
from gateway.throttle import TooManyAttempts

_Grant = TypeVar("_Grant", bound=grants.BaseGrant)


def _bound(grant: type[_Grant], **collaborators: object) -> type[_Grant]:
    """A subclass of ``grant`` with ``collaborators`` as class attributes."""
    return cast("type[_Grant]", type(grant.__name__, (grant,), collaborators))


class ClientScopes:
    """Grant mixin: a request may only ask for scopes its client may request (its own, or
    for a client that registered itself, those registered clients may ask for)."""

    request: OAuthRequest

    def validate_requested_scope(self) -> None:
        scope = self.request.payload.scope
        client = self.request.client
        if scope is None:
            return
        requested = set(scope.split())
        if not requested:
            raise InvalidScopeError("The 'scope' parameter is empty.")
        if not requested <= client.requestable_scopes:  # not named: the request's words
            raise InvalidScopeError("The client may not request some of these scopes.")


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


def _stored(resources: list[str] | None) -> tuple[str, ...] | None:
    return None if resources is None else tuple(resources)


class AuthorizationCodeGrant(SenderConstrained, ClientScopes, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    storage: ClassVar[Storage]
    revoker: ClassVar[Revoker]
    #: ``tokens.authorization_code_ttl``
    code_ttl: ClassVar[int]
    indicators: ClassVar[ResourceIndicators]
    #: what the authorization request is for, once validated (None: no resource named)
    resources: tuple[str, ...] | None = None

    @classmethod
    def bound(
        cls, storage: Storage, revoker: Revoker, code_ttl: int, indicators: ResourceIndicators
    ) -> type[Self]:
        return _bound(
            cls, storage=storage, revoker=revoker, code_ttl=code_ttl, indicators=indicators
        )

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
        with self.storage.session() as session:
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
                    expires_at=time.time() + self.code_ttl,
                    grant_id=principal.grant_id,
                    resources=None if self.resources is None else list(self.resources),
                    dpop_jkt=payload.data.get("dpop_jkt"),
                )
            )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        if len(code) > MAX_CREDENTIAL_LENGTH:
            return None
        with self.storage.session() as session:
            found = session.scalar(
                sa.select(AuthorizationCode).where(AuthorizationCode.code_hash == sha256(code))
            )
        if found is None or found.client_id != client.client_id:
            return None
        if found.used_at is not None:
            # RFC 6749 §4.1.2: a second use SHOULD revoke what the code gave
            revoke_family(self.revoker, found.grant_id)
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
        dpop_jkt = self.request.payload.data.get("dpop_jkt")
        if dpop_jkt is not None and not is_thumbprint(dpop_jkt):  # RFC 9449 §10
            raise InvalidRequestError(
                "The 'dpop_jkt' parameter is not a JWK SHA-256 thumbprint.",
                state=self.request.payload.state,
                redirect_uri=redirect_uri,
            )
        self.resources = self.indicators.for_new_grant(
            self.request, self.request.client, redirect_uri
        )
        return redirect_uri

    def validate_token_request(self) -> None:
        """Authlib's, then RFC 9449 §10: a code bound to a key (``dpop_jkt``) is redeemed only
        with a proof by it; refused before anything is written, the code stays unused."""
        super().validate_token_request()
        require_key(self.request.authorization_code.dpop_jkt, self.request.dpop_jkt, "code")

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Principal:
        """Who the code was for, and this token's resources within the code's (RFC 8707)."""
        granted = authorization_code.resources
        return Principal(
            authorization_code.user,
            authorization_code.grant_id or "",
            authorization_code.auth_time,
            session_id=authorization_code.session_id,
            nonce=authorization_code.nonce,
            resources=_stored(granted),
            audience=self.indicators.for_token(self.request, self.request.client, granted),
        )


class Throttled(InvalidGrantError):
    """RFC 6749 §5.2 ``invalid_grant``, the answer for a wrong password too, plus when to retry
    (RFC 9110 §10.2.3); the same for an unknown user."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many failed attempts; try again later.")
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


class PasswordGrant(SenderConstrained, ClientScopes, grants.ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    password_check: ClassVar[PasswordCheck]
    indicators: ClassVar[ResourceIndicators]

    @classmethod
    def bound(cls, password_check: PasswordCheck, indicators: ResourceIndicators) -> type[Self]:
        return _bound(cls, password_check=password_check, indicators=indicators)

    def authenticate_token_endpoint_client(self) -> Client:
        """Authlib's, the client kept on the request at once (Authlib keeps it only after
        ``authenticate_user``): the resources it may ask for are checked before the password."""
        client: Client = super().authenticate_token_endpoint_client()
        self.request.client = client
        return client

    def authenticate_user(self, username: str, password: str) -> Principal:
        # before the password: a request that cannot succeed costs no hash and no attempt
        resources = self.indicators.for_new_grant(self.request, self.request.client)
        try:
            user = self.password_check.check(username, password, self.request.client_addr)
        except TooManyAttempts as refused:
            raise Throttled(refused.retry_after) from None
        if user is None:
            # one answer for an unknown user and a wrong password
            raise InvalidGrantError("Invalid username or password.")
        return Principal.new(user, time.time(), resources=resources)


class RefreshTokenGrant(SenderConstrained, grants.RefreshTokenGrant):
    """RFC 6749 §6, by the rotation's rule (``gateway.issuer.rotation``)."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    rotation: ClassVar[RefreshRotation]
    indicators: ClassVar[ResourceIndicators]

    @classmethod
    def bound(cls, rotation: RefreshRotation, indicators: ResourceIndicators) -> type[Self]:
        return _bound(cls, rotation=rotation, indicators=indicators)

    @property
    def INCLUDE_NEW_REFRESH_TOKEN(self) -> bool:  # Authlib reads it per request
        return self.rotation.rotates

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        return self.rotation.find(refresh_token)

    def validate_token_request(self) -> None:
        """Authlib's, then RFC 9449 §5: a refresh token bound to a key is used only with a
        proof by it; refused before the rotation, nothing is rotated."""
        super().validate_token_request()
        require_key(self.request.refresh_token.dpop_jkt, self.request.dpop_jkt, "refresh token")

    def authenticate_user(self, refresh_token: RefreshToken) -> Principal:
        """The grant's subject, and this token's resources within the grant's (RFC 8707 §2.2:
        a refresh may ask for fewer; the refresh token keeps the whole grant)."""
        grant = refresh_token.grant
        return Principal(
            grant.user,
            grant.id,
            grant.auth_time,
            session_id=grant.session_id,
            resources=_stored(grant.resources),
            audience=self.indicators.for_token(self.request, self.request.client, grant.resources),
        )

    def issue_token(self, user: Principal, refresh_token: RefreshToken) -> dict[str, Any]:
        token: dict[str, Any] = super().issue_token(user, refresh_token)
        if "refresh_token" in token:
            presented = self.request.form["refresh_token"]
            token["refresh_token"] = self.rotation.successor(presented, token["refresh_token"])
        return token

    def save_token(self, token: dict[str, Any]) -> None:
        """The successor stored and the presented token retired, in one transaction."""
        refresh_token: RefreshToken = self.request.refresh_token
        client = self.request.client
        self.rotation.retire(
            refresh_token,
            token.get("refresh_token"),
            client.client_id,
            refresh_binding(client, self.request.dpop_jkt),
        )

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Done by ``save_token``, in the transaction that stores the new one."""


class ClientCredentialsGrant(SenderConstrained, ClientScopes, grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS
    storage: ClassVar[Storage]
    indicators: ClassVar[ResourceIndicators]

    @classmethod
    def bound(cls, storage: Storage, indicators: ResourceIndicators) -> type[Self]:
        return _bound(cls, storage=storage, indicators=indicators)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included", and nothing is stored:
        the token's grant is its client's own (``records.credentials_grant``)."""
        client = self.request.client
        audience = self.indicators.for_new_grant(self.request, client) or ()
        principal = Principal(None, credentials_grant(self.storage, client), audience=audience)
        self.request.user = principal
        token = self.generate_token(
            user=principal, scope=self.request.payload.scope, include_refresh_token=False
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER
