"""Fixtures for the live tests: a real ``gateway serve`` process on 127.0.0.1.

``live_gateway`` is shared by the whole live suite: tests create the users and clients they
change, and share only what none of them revokes (``alice``, ``resource_server``).
``isolated_gateway`` is a test's own, for tests that change server-wide state (signing keys).
Both use the suite's test database: a SQLite file, or a fresh PostgreSQL database when
``GATEWAY_TEST_DATABASE_URL`` is set (see ``tests/databases.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import fresh_database_url
from tests.live.chromium import browser, chromium, chromium_context
from tests.live.support import LiveGateway, RedirectTarget, running_gateway

#: headless Chromium for the browser tests (tests/live/chromium.py)
__all__ = ["browser", "chromium", "chromium_context"]


@pytest.fixture(scope="session")
def live_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``database_url`` fixture's kind of database, for the shared server."""
    yield from fresh_database_url(tmp_path_factory.mktemp("live-db"))


@pytest.fixture(scope="session")
def live_gateway(
    tmp_path_factory: pytest.TempPathFactory, live_database_url: str
) -> Iterator[LiveGateway]:
    with running_gateway(tmp_path_factory.mktemp("live"), live_database_url) as gateway:
        yield gateway


@pytest.fixture
def isolated_gateway(tmp_path: Path, database_url: str) -> Iterator[LiveGateway]:
    with running_gateway(tmp_path / "gateway", database_url) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def redirect_target() -> Iterator[RedirectTarget]:
    """The redirect URI registered by every client of the shared server."""
    with RedirectTarget() as target:
        yield target


@pytest.fixture(scope="session")
def alice(live_gateway: LiveGateway) -> str:
    """A user no test revokes wholesale (tests revoke only grants they made themselves)."""
    return live_gateway.create_user("alice@example.com")


@pytest.fixture(scope="session")
def resource_server(live_gateway: LiveGateway) -> dict[str, Any]:
    """A resource server: it may call the introspection endpoint."""
    return live_gateway.create_client(
        "Orders API", grant_types=("client_credentials",), introspect=True
    )


@pytest.fixture
def email() -> str:
    """A new user name per test, for tests that revoke every token of their user."""
    return f"user-{uuid.uuid4().hex[:10]}@example.com"
