"""Users and clients: creation, lookup and deletion, shared by the CLI and the issuer."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.config import GRANT_TYPES, LOOPBACK_HOSTS
from gateway.errors import ConfigError
from gateway.models import Client, User, sha256
from gateway.passwords import hash_password

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
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
        raise ConfigError(f"{email!r} is not an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if find_user(session, email) is not None:
        raise ConfigError(f"a user with email {email} already exists")
    if name is not None:
        name = name.strip()
        if not name or len(name) > 200 or not name.isprintable():
            raise ConfigError("--name must be 1 to 200 printable characters")
    user = User(email=email, name=name, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


@dataclass(frozen=True)
class NewClient:
    client: Client
    client_secret: str | None


def _check_redirect_uri(uri: str) -> None:
    """RFC 6749 §3.1.2: absolute, no fragment; https, or http on loopback only (RFC 8252)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or parts.fragment or "#" in uri:
        raise ConfigError(f"redirect URI {uri!r} must be absolute and carry no fragment")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"redirect URI {uri!r}: plain http is only allowed on loopback")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ConfigError(f"redirect URI {uri!r} has no host")


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
) -> NewClient:
    name = name.strip()
    if not name:
        raise ConfigError("a client needs a --name")
    if auth_method not in AUTH_METHODS:
        raise ConfigError(f"--auth-method must be one of {', '.join(AUTH_METHODS)}")
    for grant in grant_types:
        if grant not in GRANT_TYPES:
            raise ConfigError(f"--grant-type {grant!r} is not one of {', '.join(GRANT_TYPES)}")
    public = auth_method == "none"
    if public and "client_credentials" in grant_types:
        raise ConfigError("a public client cannot use client_credentials")
    if public and can_introspect:
        raise ConfigError("a public client cannot introspect tokens")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ConfigError("authorization_code needs at least one --redirect-uri")
    post_logout_redirect_uris = post_logout_redirect_uris or []
    for uri in (*redirect_uris, *post_logout_redirect_uris):
        _check_redirect_uri(uri)
    secret = None if public else secrets.token_urlsafe(32)
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
    client = find_client(session, client_id)
    if client is None:
        raise ConfigError(f"no client with id {client_id!r}")
    session.delete(client)
