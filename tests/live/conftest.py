"""Fixtures for the live tests: a real ``gateway serve`` process on 127.0.0.1.

``live_gateway`` is shared by a module (each test creates the users and clients it touches);
``isolated_gateway`` is a test's own, for tests that change server-wide state (signing keys).
Both use the suite's test database: a SQLite file, or a fresh PostgreSQL database when
``GATEWAY_TEST_DATABASE_URL`` is set (see ``tests/databases.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import fresh_database_url
from tests.live.support import LiveGateway, RedirectTarget, running_gateway


@pytest.fixture(scope="module")
def live_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``database_url`` fixture's database, for a whole module's server."""
    yield from fresh_database_url(tmp_path_factory.mktemp("live-db"))


@pytest.fixture(scope="module")
def live_gateway(
    tmp_path_factory: pytest.TempPathFactory, live_database_url: str
) -> Iterator[LiveGateway]:
    with running_gateway(tmp_path_factory.mktemp("live"), live_database_url) as gateway:
        yield gateway


@pytest.fixture
def isolated_gateway(tmp_path: Path, database_url: str) -> Iterator[LiveGateway]:
    with running_gateway(tmp_path / "gateway", database_url) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def redirect_target() -> Iterator[RedirectTarget]:
    with RedirectTarget() as target:
        yield target


@pytest.fixture
def email() -> str:
    """A new user name per test, so tests sharing a server never share a user."""
    return f"user-{uuid.uuid4().hex[:10]}@example.com"
