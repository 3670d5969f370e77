"""The one conftest: it registers the suite's fixtures (``tests/support/fixtures``) as plugins,
so that every test reaches them by injection wherever its file lives, and it reports which
database the run uses.

Fixtures chain config -> keys -> database -> app -> client (``app``); the issuer's CLI and
clients (``issuer``); keys -> validator -> upstreams -> the proxy under uvicorn (``proxy``); a
real ``gateway serve`` (``live``), headless Chromium (``chromium``), nginx and Caddy in front
(``edge``); and the Hypothesis profiles (``fuzz``)."""

from __future__ import annotations

import os

import pytest

from tests.support.databases import drop_template

pytest_plugins = [
    "tests.support.fixtures.app",
    "tests.support.fixtures.issuer",
    "tests.support.fixtures.proxy",
    "tests.support.fixtures.live",
    "tests.support.fixtures.chromium",
    "tests.support.fixtures.edge",
    "tests.support.fixtures.fuzz",
]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_template()


def pytest_report_header() -> str:
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    return f"gateway database: {'PostgreSQL at ' + url if url else 'SQLite (temporary files)'}"
