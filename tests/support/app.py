"""The issuer's test data: the issuer URL and password of the default config, users and
registered clients made straight in the database, and config variants."""

from __future__ import annotations

import dataclasses
from typing import Any

from argon2 import PasswordHasher

from gateway import accounts, passwords
from gateway.config import Config
from gateway.models import Client, User
from gateway.storage import Storage

ISSUER = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple"


#: Argon2id with small parameters: the same algorithm and code path, a fraction of the cost
#: (the defaults take ~0.25 s a hash on a 2-core machine, and most tests log someone in)
FAST_HASHING = passwords.Hashing(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def with_tokens(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, tokens=dataclasses.replace(config.tokens, **changes))


def make_user(storage: Storage, email: str, password: str = PASSWORD) -> User:
    with storage.session() as session:
        return accounts.create_user(session, email, password)


@dataclasses.dataclass(frozen=True)
class Registered:
    client_id: str
    client_secret: str | None
    row: Client

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.client_secret or "")


def make_client(
    storage: Storage,
    *,
    name: str = "Test app",
    redirect_uris: tuple[str, ...] = ("http://127.0.0.1:9999/callback",),
    grant_types: tuple[str, ...] = (
        "authorization_code",
        "password",
        "refresh_token",
        "client_credentials",
    ),
    scope: str = "orders:read orders:write profile",
    auth_method: str = "client_secret_basic",
    can_introspect: bool = False,
) -> Registered:
    grants = [g for g in grant_types if not (auth_method == "none" and g == "client_credentials")]
    with storage.session() as session:
        new = accounts.create_client(
            session, name, list(redirect_uris), grants, scope, auth_method, can_introspect
        )
    return Registered(new.client.client_id, new.client_secret, new.client)
