"""Issuing tokens: RFC 9068 JWT access tokens, opaque refresh tokens, and the first tokens of
a grant stored.

Every grant hands Authlib a ``Principal`` as its "user": who the token is for, and which grant
(refresh-token family, the ``sid`` claim) it belongs to. ``TokenStore`` (Authlib's
``save_token``) stores a new grant and its first refresh token in the transaction that consumes
the authorization code, with a conditional update: of two concurrent redemptions exactly one
wins, and the other is treated as the replay it is (RFC 6749 §4.1.2), which revokes the whole
grant. A refresh stores its successor by the rotation's rule instead (``gateway.issuer.rotation``).
A token request that proved a DPoP key (RFC 9449) gets an access token bound to it, and a public
client's refresh token is bound to it too (``gateway.issuer.dpop_tokens``).
A client_credentials token is stored nowhere: nothing is redeemed with it, and every way to
revoke it names what it carries (its ``jti`` and ``exp``, its client's grant, its subject).
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidGrantError

from gateway.introspect.revoker import Revoker
from gateway.issuer.dpop_tokens import refresh_binding
from gateway.issuer.idtoken import id_token
from gateway.issuer.oauth_request import OAuthRequest
from gateway.issuer.principal import Principal
from gateway.issuer.records import (
    CONSUME_CODE,
    INSERT_GRANT,
    Replayed,
    grants,
    insert_refresh_token,
    revoked_on_replay,
)
from gateway.issuer.resource_indicators import audience_claim
from gateway.issuer.scopes import releases_email
from gateway.keys import KeyRing
from gateway.models import AuthorizationCode, Client, Grant, new_id, random_token
from gateway.storage import Storage


class TokenGenerator:
    """Authlib's token generator interface, producing RFC 9068 access tokens. ``audience``:
    the ``aud`` of a token for no named resource (``tokens.audience``); a token for named ones
    has theirs (``Principal.audience``, RFC 8707)."""

    def __init__(self, keyring: KeyRing, issuer: str, audience: str, access_ttl: int) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl

    def __call__(
        self,
        grant_type: str,
        client: Client,
        user: Principal | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        if user is None:  # every grant of ours passes a Principal
            raise InvalidGrantError("no principal for this token request")
        scope = client.get_allowed_scope(scope)
        ttl = expires_in or self.access_ttl
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.user.subject if user.user else client.client_id,
            "aud": audience_claim(user.audience, self.audience),
            "exp": now + ttl,
            "iat": now,
            "jti": new_id(),
            "client_id": client.client_id,
            "scope": scope,
            "sid": user.grant_id,
        }
        if user.jkt is not None:  # RFC 9449 §6.1: bound to the key the request proved
            claims["cnf"] = {"jkt": user.jkt}
        if user.user is not None:
            claims["auth_time"] = int(user.auth_time or now)
            if releases_email(scope.split()):
                claims["email"] = user.user.email
        token: dict[str, Any] = {
            "access_token": self.keyring.sign(claims),
            # RFC 9449 §5: "token_type" "DPoP" for a bound token
            "token_type": "Bearer" if user.jkt is None else "DPoP",
            "expires_in": ttl,
            "scope": scope,
        }
        # Authlib's password grant always asks for one: a client that may not use the
        # refresh_token grant must not be handed a credential it cannot redeem
        if include_refresh_token and client.check_grant_type("refresh_token"):
            token["refresh_token"] = random_token()
        scopes = set(scope.split())
        if "openid" in scopes and user.session_id is not None:  # OpenID Connect Core §3.1.3.3
            token["id_token"] = id_token(
                self.keyring, self.issuer, client, user, scopes, token["access_token"], now, ttl
            )
        return token


class TokenStore:
    """Authlib's ``save_token`` for the grants that start a family (authorization_code,
    password); ``refresh_ttl``: ``tokens.refresh_token_ttl``, the grant's absolute lifetime."""

    def __init__(self, storage: Storage, revoker: Revoker, refresh_ttl: int) -> None:
        self.storage = storage
        self.revoker = revoker
        self.refresh_ttl = refresh_ttl

    def __call__(self, token: dict[str, Any], request: OAuthRequest) -> None:
        """Store the new grant and its refresh token, in the transaction that consumes the
        code (a password grant consumes nothing)."""
        principal: Principal = request.user
        client: Client = request.client
        refresh = token.get("refresh_token")
        now = time.time()
        grant = Grant(
            id=principal.grant_id,
            client_id=client.client_id,
            user_id=principal.user.id if principal.user else None,
            scope=token["scope"],
            auth_time=principal.auth_time,
            session_id=principal.session_id,
            created_at=now,
            expires_at=now + self.refresh_ttl,
            resources=None if principal.resources is None else list(principal.resources),
        )
        with revoked_on_replay(self.revoker), self.storage.writing() as conn:
            if request.payload.grant_type == "authorization_code":
                code: AuthorizationCode = request.authorization_code
                if conn.execute(CONSUME_CODE, {"row_id": code.id, "now": now}).rowcount != 1:
                    raise Replayed(code.grant_id)
            conn.execute(INSERT_GRANT, {c.key: getattr(grant, c.key) for c in grants.c})
            if refresh:
                jkt = refresh_binding(client, request.dpop_jkt)
                insert_refresh_token(conn, refresh, grant, client.client_id, now, jkt)
