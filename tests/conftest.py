"""Fixtures chained config -> keys -> database -> app -> client.

Every test gets its own database: a SQLite file in its tmp_path, or, when
``GATEWAY_TEST_DATABASE_URL`` names a PostgreSQL server, a fresh database on it (see
``tests/databases.py``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from gateway import accounts, passwords
from gateway.app import GatewayApp, create_app
from gateway.cli.setup import init
from gateway.config import Config, DatabaseConfig, KeysConfig, TokensConfig
from gateway.models import Client, User
from gateway.storage import Storage
from tests.accesslog import LogPipe
from tests.databases import drop_template, fresh_database_url

ISSUER = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple"


#: Argon2id with small parameters: the same algorithm and code path, a fraction of the cost
#: (the defaults take ~0.25 s a hash on a 2-core machine, and most tests log someone in)
FAST_HASHING = passwords.Hashing(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "hashing", FAST_HASHING)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(tmp_path)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return Config(
        issuer=ISSUER,
        database=DatabaseConfig(url=database_url),
        keys=KeysConfig(dir=str(tmp_path / "keys")),
        tokens=TokensConfig(),
        base_dir=str(tmp_path),
    )


def with_tokens(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, tokens=dataclasses.replace(config.tokens, **changes))


@pytest.fixture
def storage(config: Config) -> Iterator[Storage]:
    """The schema migrated and a first key created, as ``gateway init`` does."""
    store = init(config)
    yield store
    store.dispose()


@pytest.fixture
def app(config: Config, storage: Storage) -> Iterator[GatewayApp]:
    gateway_app = create_app(config)
    yield gateway_app
    # a test may drive the app without its lifespan (a bare TestClient): close its pool here
    gateway_app.gateway.storage.dispose()


@pytest.fixture
def client(app: GatewayApp) -> Iterator[TestClient]:
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def access_log() -> Iterator[LogPipe]:
    """An access log (JSON) read back through a pipe: pass ``access_log.log`` to the app."""
    pipe = LogPipe()
    yield pipe
    pipe.close()


@pytest.fixture
def user(storage: Storage) -> User:
    return make_user(storage, "alice@example.com")


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


@pytest.fixture
def confidential(storage: Storage) -> Registered:
    return make_client(storage)


@pytest.fixture
def resource_server(storage: Storage) -> Registered:
    return make_client(
        storage,
        name="Orders API",
        grant_types=("client_credentials",),
        scope="",
        can_introspect=True,
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_template()


def pytest_report_header() -> str:
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    return f"gateway database: {'PostgreSQL at ' + url if url else 'SQLite (temporary files)'}"
