"""Users, clients and consents: creation, lookup and deletion, shared by the CLI and the
issuer."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway.config import GRANT_TYPES, LOOPBACK_HOSTS
from gateway.errors import InvalidInput
from gateway.introspect.revocation import RevocationEntry
from gateway.introspect.revoker import Revoker
from gateway.issuer.client_keys import JwksRefused, jwks_uri_problem, read_jwks
from gateway.issuer.clientauth import CLIENT_AUTH_METHODS, PRIVATE_KEY_JWT
from gateway.models import AuthorizationCode, Client, Consent, Grant, User, sha256
from gateway.passwords import hash_password

MIN_PASSWORD_LENGTH = 8


def normalize_email(email: str) -> str:
    return email.strip().lower()


def storable(value: str) -> bool:
    """PostgreSQL text cannot hold NUL: a hostile lookup key matches nothing, never a 500."""
    return "\x00" not in value


def find_user(session: Session, email: str) -> User | None:
    if not storable(email):
        return None
    return session.scalar(sa.select(User).where(User.email == normalize_email(email)))


def create_user(session: Session, email: str, password: str, name: str | None = None) -> User:
    email = normalize_email(email)
    local, _, domain = email.partition("@")
    if not local or not domain or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidInput(f"{email!r} is not an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if find_user(session, email) is not None:
        raise InvalidInput(f"a user with email {email} already exists")
    if name is not None:
        name = name.strip()
        if not name or len(name) > 200 or not name.isprintable():
            raise InvalidInput("--name must be 1 to 200 printable characters")
    user = User(email=email, name=name, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


@dataclass(frozen=True)
class NewClient:
    client: Client
    client_secret: str | None


#: schemes a browser runs or reads locally rather than navigates to: never a place to send it
#: back to (RFC 9700 §4.1 on redirect URIs; native apps' private-use schemes stay allowed)
UNSAFE_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob", "about"})


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a redirect URI, or None. RFC 6749 §3.1.2: absolute, no fragment;
    https, or http on loopback only (RFC 8252); never a scheme that runs script or reads local
    files, nor white space or control characters (no URI holds them, RFC 3986). The reason
    never quotes the URI: the registration endpoint answers with it."""
    if any(c.isspace() or not c.isprintable() for c in uri):
        return "must not contain white space or control characters"
    try:
        parts = urlsplit(uri)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or parts.fragment or "#" in uri:
        return "must be absolute and carry no fragment"
    if parts.scheme in UNSAFE_SCHEMES:
        return f"may not use the {parts.scheme}: scheme"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return "may use plain http only on loopback"
    if parts.scheme in ("http", "https") and not parts.hostname:
        return "has no host"
    return None


def _check_redirect_uri(uri: str) -> None:
    problem = redirect_uri_problem(uri)
    if problem is not None:
        raise InvalidInput(f"redirect URI {uri!r} {problem}")


def check_client_keys(
    auth_method: str, jwks: dict[str, object] | None, jwks_uri: str | None
) -> None:
    """``private_key_jwt`` needs exactly one of a JWK Set of public signing keys (``--jwks``)
    and an https ``jwks_uri`` (``--jwks-uri``); the other methods take neither."""
    if auth_method != PRIVATE_KEY_JWT:
        if jwks is not None or jwks_uri is not None:
            raise InvalidInput("--jwks and --jwks-uri go with --auth-method private_key_jwt only")
        return
    if (jwks is None) == (jwks_uri is None):
        raise InvalidInput("--auth-method private_key_jwt needs one of --jwks and --jwks-uri")
    if jwks is not None:
        try:
            read_jwks(jwks, strict=True)
        except JwksRefused as refused:
            raise InvalidInput(f"the JWK Set {refused}") from None
    if jwks_uri is not None:
        problem = jwks_uri_problem(jwks_uri)
        if problem is not None:
            raise InvalidInput(f"--jwks-uri {problem}")


def _new_client_id() -> str:
    """128 random bits, URL-safe, never starting with '-' (it would read as a CLI option)."""
    while True:
        client_id = secrets.token_urlsafe(16)
        if not client_id.startswith("-"):
            return client_id


def create_client(
    session: Session,
    name: str,
    redirect_uris: list[str],
    grant_types: list[str],
    scope: str,
    auth_method: str,
    can_introspect: bool = False,
    post_logout_redirect_uris: list[str] | None = None,
    first_party: bool = False,
    resources: list[str] | None = None,
    origin: str = "cli",
    *,
    require_dpop: bool = False,
    require_par: bool = False,
    jwks: dict[str, object] | None = None,
    jwks_uri: str | None = None,
) -> NewClient:
    """A new client. ``resources``: the only resources (RFC 8707 identifiers) it may ask tokens
    for, None for any; that each is one the gateway serves is the caller's to check (it knows
    the routes)."""
    name = name.strip()
    if not name:
        raise InvalidInput("a client needs a --name")
    if auth_method not in CLIENT_AUTH_METHODS:
        raise InvalidInput(f"--auth-method must be one of {', '.join(CLIENT_AUTH_METHODS)}")
    for grant in grant_types:
        if grant not in GRANT_TYPES:
            raise InvalidInput(f"--grant-type {grant!r} is not one of {', '.join(GRANT_TYPES)}")
    check_client_keys(auth_method, jwks, jwks_uri)
    public = auth_method == "none"
    if public and "client_credentials" in grant_types:
        raise InvalidInput("a public client cannot use client_credentials")
    if public and can_introspect:
        raise InvalidInput("a public client cannot introspect tokens")
    if "authorization_code" in grant_types and not redirect_uris:
        raise InvalidInput("authorization_code needs at least one --redirect-uri")
    post_logout_redirect_uris = post_logout_redirect_uris or []
    for uri in (*redirect_uris, *post_logout_redirect_uris):
        _check_redirect_uri(uri)
    # a private_key_jwt client proves itself with its keys: no secret is made for it
    secret = None if public or auth_method == PRIVATE_KEY_JWT else secrets.token_urlsafe(32)
    client = Client(
        client_id=_new_client_id(),
        client_secret_hash=sha256(secret) if secret else None,
        name=name,
        redirect_uris=list(dict.fromkeys(redirect_uris)),
        grant_types=list(dict.fromkeys(grant_types)),
        scope=" ".join(dict.fromkeys(scope.split())),
        token_endpoint_auth_method=auth_method,
        can_introspect=can_introspect,
        post_logout_redirect_uris=list(dict.fromkeys(post_logout_redirect_uris)),
        first_party=first_party,
        resources=None if resources is None else list(dict.fromkeys(resources)),
        origin=origin,
        require_dpop=require_dpop,
        require_par=require_par,
        jwks=jwks,
        jwks_uri=jwks_uri,
    )
    session.add(client)
    session.flush()
    return NewClient(client, secret)


def list_clients(session: Session) -> list[Client]:
    return list(session.scalars(sa.select(Client).order_by(Client.id)))


def find_client(session: Session, client_id: str) -> Client | None:
    if not storable(client_id):
        return None
    return session.scalar(sa.select(Client).where(Client.client_id == client_id))


def delete_client(session: Session, client_id: str) -> None:
    """The client and what users allowed it (a client registered later never shares its id,
    but a consent must not outlive what it was given to). Its grants are the caller's to
    revoke, in the same transaction (``Revoker.client``)."""
    client = find_client(session, client_id)
    if client is None:
        raise InvalidInput(f"no client with id {client_id!r}")
    session.execute(sa.delete(Consent).where(Consent.client_id == client_id))
    session.delete(client)


# --- consents ---------------------------------------------------------------------------------


def require_user(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise InvalidInput(f"no user with email {email}")
    return user


@dataclass(frozen=True)
class StoredConsent:
    """One row of ``gateway consent list``; ``client_name`` is None for a client since deleted
    (only rows stored before ``client delete`` removed consents can be orphans)."""

    client_id: str
    client_name: str | None
    scopes: list[str]
    created_at: float
    updated_at: float
    #: the resources (RFC 8707) allowed; None: none named (the default audience)
    resources: list[str] | None = None


def list_consents(session: Session, email: str) -> list[StoredConsent]:
    """The consents of the user with ``email`` (``InvalidInput`` if none), by client name."""
    user = require_user(session, email)
    rows = session.execute(
        sa.select(Consent, Client.name)
        .outerjoin(Client, Client.client_id == Consent.client_id)
        .where(Consent.user_id == user.id)
        .order_by(Client.name, Consent.client_id)
    ).all()
    return [
        StoredConsent(c.client_id, name, c.scope.split(), c.created_at, c.updated_at, c.resources)
        for c, name in rows
    ]


@dataclass(frozen=True)
class RevokedConsent:
    """What ``revoke_consent`` did: rows deleted, grants ended, unredeemed codes voided, and
    the revocation entries to commit and publish."""

    consents: int
    grants: int
    codes: int
    entries: list[RevocationEntry]

    @property
    def nothing(self) -> bool:
        return not (self.consents or self.grants or self.codes)


def revoke_consent(
    session: Session, revoker: Revoker, user: User, client_id: str | None = None
) -> RevokedConsent:
    """Forget what ``user`` allowed ``client_id`` (every client when None) and end the grants
    issued to it for the user, so every access and refresh token of theirs dies; codes not yet
    redeemed are voided too (each would start a new grant). Run it inside
    ``revoker.revoke`` so it is one durable transaction, published to every replica.

    An unknown ``client_id`` is ``InvalidInput`` unless rows of it remain (a typo is an
    error; a consent already revoked is not: the result is then ``nothing``)."""
    if client_id is not None and not storable(client_id):
        raise InvalidInput(f"no client with id {client_id!r}")
    if client_id is not None and find_client(session, client_id) is None:
        leftover = session.scalar(
            sa.select(sa.func.count())
            .select_from(Grant)
            .where(
                Grant.user_id == user.id,
                Grant.client_id == client_id,
                Grant.revoked_at.is_(None),
            )
        ) or session.scalar(
            sa.select(sa.func.count())
            .select_from(Consent)
            .where(Consent.user_id == user.id, Consent.client_id == client_id)
        )
        if not leftover:
            raise InvalidInput(f"no client with id {client_id!r}")

    def of_client(column: InstrumentedAttribute[str]) -> sa.ColumnElement[bool]:
        return sa.true() if client_id is None else column == client_id

    db = session.connection()
    consents = db.execute(
        sa.delete(Consent).where(Consent.user_id == user.id, of_client(Consent.client_id))
    ).rowcount
    codes = db.execute(
        sa.delete(AuthorizationCode).where(
            AuthorizationCode.user_id == user.id,
            of_client(AuthorizationCode.client_id),
            AuthorizationCode.used_at.is_(None),
        )
    ).rowcount
    grant_ids = session.scalars(
        sa.select(Grant.id).where(
            Grant.user_id == user.id, of_client(Grant.client_id), Grant.revoked_at.is_(None)
        )
    ).all()
    entries = revoker.grants(session, grant_ids)
    return RevokedConsent(consents, len(grant_ids), codes, entries)
