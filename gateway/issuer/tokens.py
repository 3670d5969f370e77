"""Issuing tokens: RFC 9068 JWT access tokens and opaque, rotated refresh tokens.

Every grant hands Authlib a ``Principal`` as its "user": who the token is for, and which grant
(refresh-token family, the ``sid`` claim) it belongs to. ``persist_token`` then stores the grant
and refresh token in the same transaction that consumes the code or the old refresh token, with
a conditional update: of two concurrent redemptions exactly one wins, and the other is treated
as the replay it is (RFC 9700 §4.14.2), which revokes the whole grant; unless
``tokens.refresh_reuse_grace`` is on and the loser is handed the winner's successor (see
``successor_token``). A client_credentials
token is stored nowhere: nothing is redeemed with it, and every way to revoke it names what it
carries (its ``jti`` and ``exp``, its client's grant, its subject).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749.errors import InvalidGrantError
from sqlalchemy.engine import Connection

from gateway.issuer import records
from gateway.issuer.idtoken import id_token
from gateway.issuer.records import grants
from gateway.issuer.scopes import releases_email
from gateway.keys import KeyRing
from gateway.models import (
    AuthorizationCode,
    Client,
    Grant,
    RefreshToken,
    User,
    new_id,
    random_token,
    sha256,
)

if TYPE_CHECKING:
    from gateway.issuer.server import Request, Server


@dataclass(frozen=True)
class Principal:
    """The subject of a token request and the grant its tokens belong to."""

    user: User | None
    grant_id: str
    auth_time: float | None = None
    #: set when the grant already exists (refresh): its scope and absolute expiry
    existing: Grant | None = None
    #: the browser login session (``LoginSession.sid``), the ID token's ``sid``: only a grant
    #: made through the authorization pages has one, and only such a grant gets ID tokens
    session_id: str | None = None
    #: the authorization request's ``nonce`` (OpenID Connect Core §3.1.2.1), for the code's
    #: ID token only: a refresh's carries none (§12.2)
    nonce: str | None = None

    @classmethod
    def new(
        cls, user: User | None, auth_time: float | None = None, session_id: str | None = None
    ) -> Principal:
        return cls(user, new_id(), auth_time, session_id=session_id)


class TokenGenerator:
    """Authlib's token generator interface, producing RFC 9068 access tokens."""

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
            "aud": self.audience,
            "exp": now + ttl,
            "iat": now,
            "jti": new_id(),
            "client_id": client.client_id,
            "scope": scope,
            "sid": user.grant_id,
        }
        if user.user is not None:
            claims["auth_time"] = int(user.auth_time or now)
            if releases_email(scope.split()):
                claims["email"] = user.user.email
        token: dict[str, Any] = {
            "access_token": self.keyring.sign(claims),
            "token_type": "Bearer",
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


#: what the successor key is for, so that it can never be mistaken for another use of the secret
_SUCCESSOR_CONTEXT = b"gateway refresh-token successor v1"


def successor_token(secret: bytes, presented: str) -> str:
    """The refresh token that replaces ``presented``: HMAC-SHA256 of it, URL-safe, as long as a
    ``random_token``.

    Derived rather than random, so that a second presentation of the same token within
    ``tokens.refresh_reuse_grace`` (two tabs refreshing at once) recomputes the very token the
    first was given, while only its hash is stored. The key comes from ``secret``, the
    ``keys/session.key`` every replica already shares (``gateway.keys.session_secret``):
    256 random bits, made by ``gateway init``, never sent anywhere; a key of its own is derived
    from it (HMAC with ``_SUCCESSOR_CONTEXT``), so no successor is ever a valid cookie MAC and no
    cookie MAC a successor. Without the secret nothing is derivable: a successor is as
    unguessable as a random token. A replaced secret only breaks the successors of tokens
    rotated just before, and fails closed: their second presentation counts as reuse."""
    key = hmac.new(secret, _SUCCESSOR_CONTEXT, hashlib.sha256).digest()
    digest = hmac.new(key, presented.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Replay(Exception):
    def __init__(self, grant_id: str | None) -> None:
        super().__init__(grant_id)
        self.grant_id = grant_id


def persist_token(server: Server, token: dict[str, Any], request: Request) -> None:
    """Store what the token response hands out that the database must know: a new grant (a
    user's first tokens) and the refresh token, in the transaction that consumes the code or
    the old refresh token. A client_credentials token writes nothing: its ``sid`` is the
    client's grant (``records.credentials_grant``) and it is revoked by ``jti`` (the
    revocation row carries the ``exp`` of the presented token), by its grant, or by its
    subject's "not before"."""
    principal: Principal = request.user
    client: Client = request.client
    refresh = token.get("refresh_token")
    now = time.time()
    grant = principal.existing or Grant(  # the new family
        id=principal.grant_id,
        client_id=client.client_id,
        user_id=principal.user.id if principal.user else None,
        scope=token["scope"],
        auth_time=principal.auth_time,
        session_id=principal.session_id,
        created_at=now,
        expires_at=now + server.config.tokens.refresh_token_ttl,
    )
    try:
        with server.storage.writing() as conn:
            fresh = _consume_credential(server, conn, request, refresh, now)
            if principal.existing is None:
                conn.execute(records.INSERT_GRANT, {c.key: getattr(grant, c.key) for c in grants.c})
            if refresh and fresh:
                conn.execute(
                    records.INSERT_REFRESH_TOKEN,
                    {
                        "token_hash": sha256(refresh),
                        "grant_id": grant.id,
                        "client_id": client.client_id,
                        # RFC 6749 §6: a new refresh token keeps the scope of the one it replaces
                        "scope": grant.scope,
                        "created_at": now,
                        "expires_at": grant.expires_at,
                        "rotated_at": None,
                    },
                )
    except _Replay as replay:
        grant_id = replay.grant_id
        if grant_id:
            server.revoker.revoke(lambda s: server.revoker.grants(s, [grant_id]))
        raise InvalidGrantError("The grant has already been used; it is now revoked.") from None


def _consume_credential(
    server: Server, conn: Connection, request: Request, refresh: str | None, now: float
) -> bool:
    """Consume the code or old refresh token; False when ``refresh`` is already stored (the
    successor handed out again within the grace), else True."""
    grant_type = request.payload.grant_type
    if grant_type == "authorization_code":
        code: AuthorizationCode = request.authorization_code
        if conn.execute(records.CONSUME_CODE, {"row_id": code.id, "now": now}).rowcount != 1:
            raise _Replay(code.grant_id)
    elif grant_type == "refresh_token":
        old: RefreshToken = request.refresh_token
        if server.config.tokens.rotate_refresh_tokens:
            successor = {"row_id": old.id, "successor": refresh and sha256(refresh)}
            if conn.execute(records.ROTATE_REFRESH_TOKEN, {**successor, "now": now}).rowcount:
                return True
            # Rotated already, by a concurrent request or an earlier one. Within the grace the
            # successor (derived from the presented token, so the same string) goes out again,
            # as long as it is the one stored and is unused; otherwise this is reuse.
            grace = server.config.tokens.refresh_reuse_grace
            if not grace or not refresh:
                raise _Replay(old.grant_id)
            again = {**successor, "rotated_since": now - grace}
            if conn.execute(records.REPRESENT_ROTATED, again).rowcount:
                return False
            raise _Replay(old.grant_id)
        if conn.execute(records.REFRESH_TOKEN_EXISTS, {"row_id": old.id}).first() is None:
            raise InvalidGrantError("The refresh token is no longer valid.")  # revoked meanwhile
    return True
