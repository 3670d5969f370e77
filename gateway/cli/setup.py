"""What every command of the ``gateway`` CLI shares: the database made ready (``init``), and
how results are printed (text, or ``--json``)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Config
from gateway.errors import StorageUnavailable
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.revoker import Revoker
from gateway.keys import ensure_key, session_secret
from gateway.storage import Storage, upgrade_schema


def out(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2) if as_json else text)


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def init(config: Config) -> Storage:
    """Create or upgrade the schema and a first key; idempotent. Returns the storage."""
    storage = Storage(config.database_url)
    try:
        upgrade_schema(storage.engine)
    except SQLAlchemyError as exc:
        storage.dispose()
        raise StorageUnavailable(f"cannot prepare the database: {exc.__class__.__name__}") from exc
    created = ensure_key(config.keys_dir, config.keys.algorithm)
    session_secret(config.keys_dir)
    if created:
        print(
            f"created signing key {created.kid} ({created.alg}) in {config.keys_dir}",
            file=sys.stderr,
        )
    return storage


Command = Callable[[Config, argparse.Namespace], None]


def with_storage(command: Callable[[Config, argparse.Namespace, Storage], None]) -> Command:
    """Run ``command`` with the database initialised, and its connections closed after."""

    def run(config: Config, args: argparse.Namespace) -> None:
        storage = init(config)
        try:
            command(config, args, storage)
        finally:
            storage.dispose()

    return run


def revoker_for(config: Config, storage: Storage) -> Revoker:
    """A revoker for a command: it commits revocations; running gateways learn them from the
    database (or its NOTIFY)."""
    return Revoker(storage, RevocationCache(), config.tokens.access_token_ttl, config.tokens.leeway)
