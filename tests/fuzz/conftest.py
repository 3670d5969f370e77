"""Hypothesis profiles and the seeded world the fuzz tests send their requests into.

``quick`` (the default, run by ``make test``): 200 examples a test, derandomized so that CI
sees the same inputs every run. ``GATEWAY_FUZZ=long``: 5000 random ones, for a run on purpose.
``GATEWAY_FUZZ_EXAMPLES=N`` overrides either count.

Each test builds its app once and feeds it every example through a ``@given`` function
defined inside it: the invariants hold per request, whatever earlier examples left behind, and
a fresh database per example would cost a hundred times the request. Hence the function-scoped
fixture and too-slow health checks are off.
"""

from __future__ import annotations

import dataclasses
import os

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from gateway.models import Base
from gateway.storage import Storage
from tests.conftest import PASSWORD, Registered, make_client, make_user
from tests.issuer.conftest import password_grant, tokens

# the proxy's fixtures (keys -> validator -> gateway under uvicorn, the echo upstream)
from tests.proxy.conftest import (  # noqa: F401
    echo,
    gateway,
    keyring,
    keys_dir,
    mint,
    revocations,
    serve,
    validator,
    write_config,
)

SHARED_APP = (HealthCheck.function_scoped_fixture, HealthCheck.too_slow)

settings.register_profile(
    "quick",
    max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "200")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=SHARED_APP,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "5000")),
    deadline=None,
    # no .hypothesis directory in the work tree: a failure prints the blob that replays it
    database=None,
    print_blob=True,
    suppress_health_check=SHARED_APP,
)
settings.load_profile("long" if os.environ.get("GATEWAY_FUZZ") == "long" else "quick")


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
