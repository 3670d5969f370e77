"""Remembered consent: what a user allowed a client, so a later request for no more is not
asked again (OpenID Connect Core §3.1.2.4: the server may use a prior consent).

One row per (user, client), its ``scope`` the union of every Allow, and its ``resources`` the
union of the resources (RFC 8707) every Allow was for: a consent that did not cover a resource
does not cover it later. Replicas write the same rows, so ``remember`` lets the database decide
every race: an insert that loses to a concurrent one (the unique constraint) turns into an
update, and an update only applies to the row it read (compare and swap, on both columns), so
two concurrent Allows of different scopes or resources all count.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.errors import StorageUnavailable
from gateway.models import Consent
from gateway.storage import Storage

#: attempts before giving up on a row other writers keep changing (each loss means someone
#: else's Allow landed; a handful of concurrent Allows for one user and client is already odd)
ATTEMPTS = 8


#: the resources column as the text stored, which the compare and swap compares
_RESOURCES_TEXT = sa.cast(Consent.resources, sa.Text)


@dataclass(frozen=True)
class ConsentGiven:
    """What a user allowed a client."""

    scopes: frozenset[str]
    #: None: remembered before resources were, when consent covered the default audience only
    resources: frozenset[str] | None


@dataclass(frozen=True)
class _Row:
    scope: str
    resources: list[str] | None
    #: ``resources`` as stored (SQL NULL: None), for the compare and swap
    resources_text: str | None


def _stored(storage: Storage, user_id: str, client_id: str) -> _Row | None:
    """The row as stored (None: no row)."""

    def query(conn: Connection) -> _Row | None:
        row = conn.execute(
            sa.select(Consent.scope, Consent.resources, _RESOURCES_TEXT).where(
                Consent.user_id == user_id, Consent.client_id == client_id
            )
        ).first()
        return None if row is None else _Row(row[0], row[1], row[2])

    return storage.read(query)


def given_consent(storage: Storage, user_id: str, client_id: str) -> ConsentGiven | None:
    """What ``user_id`` has allowed ``client_id``, or None if it never allowed anything."""
    row = _stored(storage, user_id, client_id)
    if row is None:
        return None
    resources = None if row.resources is None else frozenset(row.resources)
    return ConsentGiven(frozenset(row.scope.split()), resources)


def granted_scopes(storage: Storage, user_id: str, client_id: str) -> frozenset[str] | None:
    """The scopes ``user_id`` has allowed ``client_id``, or None if it never allowed any."""
    found = given_consent(storage, user_id, client_id)
    return None if found is None else found.scopes


def _union(stored: str, scopes: frozenset[str]) -> str:
    return " ".join(sorted(set(stored.split()) | scopes))


def _resources_union(
    stored: list[str] | None, added: frozenset[str] | None, null_means: frozenset[str]
) -> list[str] | None:
    """``stored`` and ``added``, either None for no resource named (``null_means``): None
    while both are, else the sorted union."""
    if stored is None and added is None:
        return None
    had = null_means if stored is None else frozenset(stored)
    return sorted(had | (null_means if added is None else added))


def remember(
    storage: Storage,
    user_id: str,
    client_id: str,
    scopes: frozenset[str],
    resources: Iterable[str] | None = None,
    null_means: Iterable[str] = (),
) -> None:
    """Add ``scopes`` and ``resources`` to what ``user_id`` allowed ``client_id``.

    ``resources`` None: the request named none (its tokens are for the default audience);
    ``null_means``: that default audience, which a row stores as NULL until resources are
    added to it."""
    added = None if resources is None else frozenset(resources)
    default = frozenset(null_means)
    for _ in range(ATTEMPTS):
        row = _stored(storage, user_id, client_id)
        now = time.time()
        if row is None:
            try:
                with storage.writing() as conn:
                    conn.execute(
                        sa.insert(Consent).values(
                            user_id=user_id,
                            client_id=client_id,
                            scope=_union("", scopes),
                            resources=None if added is None else sorted(added),
                            created_at=now,
                            updated_at=now,
                        )
                    )
                return
            except sa.exc.IntegrityError:
                continue  # a concurrent Allow inserted it first: read it, then add to it
        wanted = _union(row.scope, scopes)
        wanted_resources = _resources_union(row.resources, added, default)
        if wanted == row.scope and wanted_resources == row.resources:
            return
        with storage.writing() as conn:
            updated = conn.execute(
                sa.update(Consent)
                .where(
                    Consent.user_id == user_id,
                    Consent.client_id == client_id,
                    Consent.scope == row.scope,
                    _RESOURCES_TEXT.is_not_distinct_from(row.resources_text),
                )
                .values(scope=wanted, resources=wanted_resources, updated_at=now)
            )
        if updated.rowcount == 1:
            return
        # another writer changed (or removed) the row since we read it: read again
    raise StorageUnavailable()  # 503, retry: the writers will have settled
