"""The seeded world the fuzz tests send their requests into: registered clients, a user and
live tokens, the values no response may contain, and the rows a rejected request must leave
as they were. (The Hypothesis profiles: ``tests/support/fixtures/fuzz.py``.)"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.models import Base
from gateway.storage import Storage
from tests.support.app import PASSWORD, Registered, make_client, make_user
from tests.support.issuer import password_grant, tokens


@dataclasses.dataclass(frozen=True)
class World:
    """Registered clients, a user, live tokens: everything a request can be seeded with."""

    confidential: Registered
    resource_server: Registered
    public: Registered
    email: str
    access_token: str
    refresh_token: str

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values no response may ever contain."""
        return (
            self.confidential.client_secret or "",
            self.resource_server.client_secret or "",
            PASSWORD,
            self.access_token,
            self.refresh_token,
        )


def seed(storage: Storage, client: TestClient) -> World:
    user = make_user(storage, "alice@example.com")
    confidential = make_client(storage)
    resource_server = make_client(
        storage,
        name="Orders API",
        grant_types=("client_credentials",),
        scope="",
        can_introspect=True,
    )
    public = make_client(storage, name="Native app", auth_method="none")
    issued = tokens(password_grant(client, confidential, user.email, scope="orders:read"))
    return World(
        confidential,
        resource_server,
        public,
        user.email,
        issued["access_token"],
        issued["refresh_token"],
    )


def row_counts(storage: Storage) -> dict[str, int]:
    """Rows in every table of the schema."""
    with storage.engine.connect() as conn:
        return {
            table.name: conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }
