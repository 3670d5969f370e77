"""Test databases: a SQLite file per test, or a fresh PostgreSQL database per test.

With ``GATEWAY_TEST_DATABASE_URL`` set (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), each test gets a new database on
that server, created from a migrated template so it costs one ``CREATE DATABASE``. If the
server cannot be reached the test fails: never a silent fall-back to SQLite.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

ENV = "GATEWAY_TEST_DATABASE_URL"
_TEMPLATE = f"gateway_test_template_{os.getpid()}"
_template_ready: list[str] = []


def _admin_engine(url: str) -> sa.engine.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _ensure_template(admin_url: str) -> None:
    if _template_ready:
        return
    from gateway.storage import create_engine, upgrade_schema

    admin = _admin_engine(admin_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{_TEMPLATE}"'))
    admin.dispose()
    engine = create_engine(make_url(admin_url).set(database=_TEMPLATE).render_as_string(False))
    upgrade_schema(engine)
    engine.dispose()
    _template_ready.append(_TEMPLATE)


def drop_template() -> None:
    admin_url = os.environ.get(ENV)
    if not admin_url or not _template_ready:
        return
    admin = _admin_engine(admin_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)'))
    admin.dispose()
    _template_ready.clear()


def fresh_database_url(tmp_path: Path, migrated: bool = True) -> Iterator[str]:
    """A database for one test: migrated to head (cheap on PostgreSQL: a template copy), or
    empty (``migrated=False``, for migration tests)."""
    admin_url = os.environ.get(ENV)
    if not admin_url:
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    template = "template0"
    if migrated:
        _ensure_template(admin_url)
        template = _TEMPLATE
    with scratch_database(admin_url, template) as url:
        yield url


@contextlib.contextmanager
def scratch_database(
    admin_url: str, template: str = "template0", prefix: str = "gateway_test"
) -> Iterator[str]:
    """A new database on the server of ``admin_url``, dropped (connections and all) after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(admin_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
