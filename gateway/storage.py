"""Database engine, sessions and schema migrations.

SQLAlchemy's connection errors are translated here, once, into ``StorageUnavailable`` (503):
callers use ``Storage.session()`` and never see a driver exception for an outage.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import StorageUnavailable

log = logging.getLogger("gateway.storage")

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"

#: driver errors that mean "the database is not there right now", not "your query is wrong"
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
)


def create_engine(url: str, **options: Any) -> Engine:
    """The engine for ``url``; ``options`` go to SQLAlchemy's ``create_engine``."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **options
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    options = {"pool_pre_ping": True, **options}
    return sa.create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
        **options,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a revocation is durable before we answer
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema in place (idempotent)."""
    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


class Storage:
    """The engine and its session factory; one per process, owned by the app's lifespan."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        # The request path's reads are one statement each, atomic alone: in autocommit they
        # cost PostgreSQL no BEGIN and COMMIT round trips, and without a ping before each no
        # third one (see ``read``). A pool of their own: switching a pooled connection's
        # isolation level at every checkout costs about what it saves.
        self._reader = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite takes one writer at a time. Writers of this process queue on a lock instead:
        # SQLite's busy handler polls, sleeping 1, 2, 5 ... 100 ms between tries, which under
        # load costs more than the writes. (Other processes still meet the busy handler.)
        self._writer: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        #: called once per ``StorageUnavailable`` raised (the gateway counts them)
        self.on_outage: Callable[[], None] = lambda: None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error. ``write``:
        it writes on a path that can be busy (tokens, revocations, pruning), see ``writing``."""
        with self._outage(), self._writer if write else contextlib.nullcontext():
            with self._sessions.begin() as session:
                yield session

    def read(self, query: Callable[[Connection], T]) -> T:
        """``query(connection)``, one statement that only reads, for the request path (an ORM
        session costs more than the query it runs). No transaction: use ``writing`` for what
        must see one state across statements.

        A connection the database dropped (a restart, a failover, an idle timeout) is found by
        the read itself rather than by a ping before every read: SQLAlchemy then invalidates
        the pool, and the read, having changed nothing, runs once more on a new connection."""
        with self._outage():
            try:
                with self._reader.connect() as conn:
                    return query(conn)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            with self._reader.connect() as conn:
                return query(conn)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A Core connection in a transaction that writes, committed on success; on SQLite,
        one at a time."""
        with self._outage(), self._writer, self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _outage(self) -> Iterator[None]:
        try:
            yield
        except OUTAGE_ERRORS as exc:
            log.warning("database unavailable: %s", exc.__class__.__name__)
            self.on_outage()
            raise StorageUnavailable() from exc

    def dispose(self) -> None:
        self.engine.dispose()
        self._reader.dispose()
