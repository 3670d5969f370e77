"""The storage the token endpoint runs on: reads without a ping survive a connection the
database dropped, and on SQLite the writers of one process take turns on a lock rather than
in SQLite's sleeping busy handler."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from gateway.storage import Storage
from tests.support.issuer import token_request, tokens


def select_one(conn: sa.Connection) -> int:
    return int(conn.execute(sa.text("SELECT 1")).scalar_one())


def test_a_read_survives_the_database_dropping_its_connections(client, storage, confidential):
    if not storage.is_postgres:
        pytest.skip("SQLite has no server to drop a connection")
    gateway_storage: Storage = client.app.gateway.storage
    tokens(token_request(client, confidential, grant_type="client_credentials"))  # pool warm
    with storage.engine.connect() as admin:
        dropped = admin.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert dropped >= 1
    assert gateway_storage.read(select_one) == 1
    tokens(token_request(client, confidential, grant_type="client_credentials"))


def test_sqlite_writers_of_one_process_take_turns(storage):
    if storage.is_postgres:
        pytest.skip("PostgreSQL writers run side by side, row locks decide")
    inside: list[int] = []
    overlaps: list[int] = []

    def write(i: int) -> None:
        with storage.writing() as conn:
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(i)
            conn.execute(sa.text("SELECT 1"))
            time.sleep(0.01)
            inside.remove(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert overlaps == []
