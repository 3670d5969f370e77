"""Schema migrations: ``gateway init`` upgrades a database of the first revision in place."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.cli import main
from gateway.storage import create_engine, current_revision, head_revision, upgrade_schema
from tests.support.databases import fresh_database_url

FIRST = "0001"


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(tmp_path, migrated=False)


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[keys]\ndir = "{tmp_path / "keys"}"\n')
    return str(path)


def test_init_upgrades_a_first_revision_database_keeping_its_rows(
    tmp_path: Path, empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(empty_database_url)
    upgrade_schema(engine, FIRST)
    assert current_revision(engine) == FIRST
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (id, email, password_hash, created_at) "
                "VALUES ('u1', 'old@example.com', 'x', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO grants (id, client_id, user_id, scope, created_at, expires_at) "
                "VALUES ('g1', 'c1', 'u1', 'a', :now, :later)"
            ),
            {"now": now, "later": now + 60},
        )
    config = _config(tmp_path, empty_database_url)

    assert main(["--config", config, "db", "current"]) == 0
    assert capsys.readouterr().out.startswith(f"{FIRST} (behind head")

    assert main(["--config", config, "init"]) == 0
    assert current_revision(engine) == head_revision(engine) != FIRST
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT email FROM users")).scalars().all() == [
            "old@example.com"
        ]
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("grants")}
    assert "ix_grants_expires_at" in indexes  # what revision 0002 added

    capsys.readouterr()
    assert main(["--config", config, "init"]) == 0  # idempotent
    assert main(["--config", config, "db", "current"]) == 0
    assert "(up to date)" in capsys.readouterr().out
    engine.dispose()


def test_init_creates_the_schema_in_an_empty_database(
    tmp_path: Path, empty_database_url: str
) -> None:
    assert main(["--config", _config(tmp_path, empty_database_url), "init"]) == 0
    engine = create_engine(empty_database_url)
    assert current_revision(engine) == head_revision(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"users", "clients", "grants", "refresh_tokens", "revocations"} <= tables
    engine.dispose()
