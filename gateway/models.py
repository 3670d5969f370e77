"""SQLAlchemy 2.0 models. Secrets at rest are hashes: Argon2id for passwords, SHA-256 for the
high-entropy client secrets, authorization codes and refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gateway.redirect_uris import redirect_uri_matches


def now() -> float:
    return time.time()


def new_id() -> str:
    return uuid.uuid4().hex


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def random_token() -> str:
    """256 bits from the OS CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


#: a client_id's longest form: a Client ID Metadata Document's URL
CLIENT_ID_LENGTH = 512
#: ``Client.origin`` of a client whose client_id is the URL of its metadata document
METADATA_DOCUMENT = "metadata-document"

#: a list of resource identifiers (RFC 8707), or SQL NULL (never JSON ``null``) for none named
RESOURCES = JSON(none_as_null=True)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: the OpenID Connect ``name`` claim (scope ``profile``); optional
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)

    @property
    def subject(self) -> str:
        return self.id


class Client(Base, ClientMixin):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_LENGTH), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(Text, default="")
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    #: a resource server allowed to call the introspection endpoint
    can_introspect: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    #: the grant (``sid``) that every client_credentials token of this client shares: made at
    #: its first such token, cleared when revoked (the next token starts a new one)
    credentials_grant_id: Mapped[str | None] = mapped_column(String(32))
    #: RP-Initiated Logout 1.0: where the logout endpoint may send the browser back to (exact
    #: string match)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: a client of the deployment itself: its users are never shown a consent page
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    #: how the client came: ``cli`` (``gateway client create``), ``registration`` (RFC 7591)
    #: or ``metadata-document`` (its client_id is the URL of its metadata)
    origin: Mapped[str] = mapped_column(String(32), default="cli", server_default="cli")
    #: the protected resources (RFC 8707 identifiers) it may ask tokens for; None: any the
    #: gateway serves (``gateway client create --resource``)
    resources: Mapped[list[str] | None] = mapped_column(RESOURCES)
    #: RFC 7591 ``client_uri``: the home page a registered client gave (None for others)
    client_uri: Mapped[str | None] = mapped_column(Text)
    #: OpenID Connect Registration ``application_type`` of a registered client: ``web`` or
    #: ``native`` (None for others)
    application_type: Mapped[str | None] = mapped_column(String(16))
    #: RFC 7592: the hash of a registered client's registration access token, the one key to
    #: its configuration endpoint (None for clients that did not register themselves)
    registration_token_hash: Mapped[str | None] = mapped_column(String(64))
    #: RFC 9449 ``dpop_bound_access_tokens``: its token requests must carry a DPoP proof
    require_dpop: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: RFC 9126 ``require_pushed_authorization_requests``: its authorization requests must be
    #: pushed (``/oauth/par``) first
    require_par: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: ``private_key_jwt`` (RFC 7523): the public keys its assertions are signed with, as a
    #: JWK Set, or the URL it publishes them at (one of the two)
    jwks: Mapped[dict[str, object] | None] = mapped_column(JSON(none_as_null=True))
    jwks_uri: Mapped[str | None] = mapped_column(Text)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def scopes(self) -> set[str]:
        return set(self.scope.split())

    def widen_scopes(self, requestable: frozenset[str]) -> None:
        """Let requests name any of ``requestable``, not only the client's ``scope``, which
        stays the default when a request names none: a client that registered itself may ask
        for any scope of ``[registration] allowed_scopes`` (``records.ClientLookup``). Not a
        column: the config decides, at every request."""
        self._requestable = requestable

    @property
    def requestable_scopes(self) -> set[str]:
        """What a request of this client may name: its ``scope``, unless widened."""
        widened: frozenset[str] | None = getattr(self, "_requestable", None)
        return self.scopes if widened is None else set(widened)

    # --- authlib ClientMixin ---------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """No scope asked: the client's whole scope. Unknown scopes were refused earlier."""
        requestable = self.requestable_scopes
        if not scope:
            return " ".join(s for s in self.scope.split() if s in requestable)
        return " ".join(s for s in scope.split() if s in requestable)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(redirect_uri_matches(r, redirect_uri) for r in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret_hash is None:
            return False
        return secrets.compare_digest(self.client_secret_hash, sha256(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and self.is_public:
            return False
        return grant_type in self.grant_types


#: ``Grant.expires_at`` of a client's own grant: it lasts until revoked (then, a token lifetime)
UNTIL_REVOKED = float("inf")


class Grant(Base):
    """One authorization by a resource owner, or a client's for itself (RFC 6749 §4.4).

    Its id is the ``sid`` claim of every access token issued under it. A user's grant is the
    refresh-token family. A client's grant (``user_id`` None) is shared by all its
    client_credentials tokens (``Client.credentials_grant_id``): no token costs a write."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_LENGTH), index=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text, default="")
    auth_time: Mapped[float | None] = mapped_column(Float)
    #: the browser login session the grant was made in (the ID token's ``sid``); None for
    #: grants made without one (password, client_credentials), which get no ID token
    session_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    #: the resources (RFC 8707) its tokens may be for, as granted; None: none was named, its
    #: tokens are for the default audience (``tokens.audience``)
    resources: Mapped[list[str] | None] = mapped_column(RESOURCES)

    user: Mapped[User | None] = relationship(lazy="joined")


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_LENGTH))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: as sent in the authorization request (None when omitted: the one registered was used)
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    auth_time: Mapped[float] = mapped_column(Float)
    #: OpenID Connect: the authorization request's ``nonce``, echoed in the ID token
    nonce: Mapped[str | None] = mapped_column(String(255))
    #: the browser login session that approved it (``LoginSession.sid``)
    session_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    #: set when redeemed; a second redemption revokes ``grant_id``
    used_at: Mapped[float | None] = mapped_column(Float)
    grant_id: Mapped[str | None] = mapped_column(String(32))
    #: the resources (RFC 8707) the authorization request named, as approved; None: none
    resources: Mapped[list[str] | None] = mapped_column(RESOURCES)
    #: RFC 9449 §10 ``dpop_jkt``: the thumbprint of the key whose proof must redeem the code
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship(lazy="joined")

    # --- authlib AuthorizationCodeMixin ----------------------------------------------------

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_LENGTH))
    scope: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    #: set when exchanged for a new one; presenting it again is reuse (but see ``successor_hash``)
    rotated_at: Mapped[float | None] = mapped_column(Float)
    #: the ``token_hash`` of the one it was exchanged for: within ``tokens.refresh_reuse_grace``
    #: of ``rotated_at``, and while that one is unused, presenting this one again hands the same
    #: successor out once more (``gateway.issuer.rotation.successor_token``)
    successor_hash: Mapped[str | None] = mapped_column(String(64))
    #: RFC 9449 §5: a public client's refresh token is bound to the key (this RFC 7638
    #: thumbprint) that proved its first token request; its successors keep the binding
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))

    grant: Mapped[Grant] = relationship(lazy="joined")

    # --- what authlib's RefreshTokenGrant asks of a token ----------------------------------

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope


class Revocation(Base):
    """One entry of the revocation sets that every validator holds in memory.

    ``kind`` is ``jti`` (one access token), ``sid`` (every token of a grant) or ``sub`` (every
    token of a subject issued before ``not_before``). ``expires_at`` is when no token the entry
    could match is still valid, so the entry can be pruned."""

    __tablename__ = "revocations"
    __table_args__ = (Index("ix_revocations_kind_value", "kind", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(128))
    not_before: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class LoginFailure(Base):
    """One password check that failed: the login throttle's evidence (gateway/throttle.py),
    shared by every replica and worker. ``user_key`` is a keyed hash of the normalised user
    name, never the name: people type passwords into the email field. ``address`` is the
    client's (IPv6 by its /64); ``device_id`` the known-device cookie's, when the attempt came
    with one for that user. Pruned by housekeeping once past the throttle's window."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_address_at", "address", "at"),
        Index("ix_login_failures_user_key_at", "user_key", "at"),
        Index("ix_login_failures_device_id_at", "device_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_key: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class DeviceReset(Base):
    """``gateway user devices forget``: the user's known-device cookies issued until
    ``not_before`` no longer skip the throttle's per-user delay. Keyed like ``LoginFailure``
    (the throttle's keyed hash of the user name), so the throttle reads it in its one query.
    Kept: one small row per user who ever had their devices forgotten."""

    __tablename__ = "device_resets"

    user_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    not_before: Mapped[float] = mapped_column(Float)


class BrowserSession(Base):
    """One browser login (the OpenID Connect ``sid``), the server-side half of the signed
    login cookie: single sign-on lasts while it is neither ended (logout) nor past
    ``sessions.lifetime`` since login (``expires_at``) or ``sessions.idle_timeout`` since
    ``last_seen_at``. Every replica reads it, so a logout holds everywhere at once, even for a
    replayed copy of the old cookie. Pruned by housekeeping once past ``expires_at``."""

    __tablename__ = "browser_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    ended_at: Mapped[float | None] = mapped_column(Float)


class Consent(Base):
    """What a user allowed a client: the union of the scopes and of the resources of every
    Allow. A later authorization request for a subset of both shows no consent page."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id", name="uq_consents_user_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_LENGTH), index=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    #: the resources (RFC 8707) allowed, sorted; None: a consent remembered before resources
    #: were, which covered the default audience only
    resources: Mapped[list[str] | None] = mapped_column(RESOURCES)


class RegistrationToken(Base):
    """An initial access token (RFC 7591 §3): with ``[registration] dynamic = "token"``, the
    bearer credential a registration must carry. Made by ``gateway registration token
    create``, shown once, kept as its hash; each registration spends one of ``uses_allowed``.
    Pruned by housekeeping once past ``expires_at``."""

    __tablename__ = "registration_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    uses_allowed: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class ClientRegistration(Base):
    """One client registered at ``POST /oauth/register``, by the address it came from (the
    login throttle's unit: ``throttle.address_key``): the evidence of the per-address rate,
    ``[registration] max_per_address_per_hour``, shared by every replica. Kept an hour
    (``expires_at``), whatever became of the client, then pruned by housekeeping."""

    __tablename__ = "client_registrations"
    __table_args__ = (Index("ix_client_registrations_address_at", "address", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class PushedRequest(Base):
    """A pushed authorization request (RFC 9126): the parameters a client sent to
    ``/oauth/par``, redeemable once at ``/oauth/authorize`` by its ``request_uri`` (of which
    only the hash is kept), by that client, until ``expires_at``. In the database, so that any
    replica redeems what another accepted."""

    __tablename__ = "pushed_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_uri_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_LENGTH))
    #: the authorization request's parameters, as validated when pushed: each name's values
    parameters: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    #: set when redeemed: a second redemption is refused
    used_at: Mapped[float | None] = mapped_column(Float)


class ClientAssertionUse(Base):
    """The ``jti`` of a client assertion (RFC 7523 §3 item 7) accepted once: the unique
    constraint decides, so two replicas can never both accept the same assertion. Kept until
    the assertion's ``exp``, when it could not be accepted anyway."""

    __tablename__ = "client_assertion_uses"
    __table_args__ = (UniqueConstraint("client_id", "jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_LENGTH))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[float] = mapped_column(Float, index=True)
