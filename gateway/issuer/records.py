"""The rows the token and introspection endpoints read and write on every request, in
SQLAlchemy Core.

An ORM ``Session`` costs more than the query it runs (about 160 µs against 40 µs for a client
lookup on SQLite), and so does building a statement (SQLAlchemy caches its compiled form, keyed
on the statement object). So the request path runs the statements made once here, on a pooled
connection, and builds the model objects Authlib reads from the row, detached: nothing here is
ever flushed.
"""

from __future__ import annotations

import time
from typing import Any, cast

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidClientError
from sqlalchemy.engine import Connection

from gateway.models import (
    UNTIL_REVOKED,
    AuthorizationCode,
    Client,
    Grant,
    RefreshToken,
    User,
    new_id,
)
from gateway.storage import Storage

clients = cast(sa.Table, Client.__table__)
codes = cast(sa.Table, AuthorizationCode.__table__)
grants = cast(sa.Table, Grant.__table__)
refresh_tokens = cast(sa.Table, RefreshToken.__table__)
users = cast(sa.Table, User.__table__)

_CLIENT = sa.select(clients).where(clients.c.client_id == sa.bindparam("client_id"))
_REFRESH = (
    sa.select(
        *(c.label(f"r_{c.key}") for c in refresh_tokens.c),
        *(c.label(f"g_{c.key}") for c in grants.c),
        *(c.label(f"u_{c.key}") for c in users.c),
    )
    .join_from(refresh_tokens, grants, refresh_tokens.c.grant_id == grants.c.id)
    .outerjoin(users, grants.c.user_id == users.c.id)
    .where(refresh_tokens.c.token_hash == sa.bindparam("token_hash"))
)


#: a code or refresh token is used once: of two concurrent uses, one updates a row
CONSUME_CODE = (
    sa.update(codes)
    .where(codes.c.id == sa.bindparam("row_id"), codes.c.used_at.is_(None))
    .values(used_at=sa.bindparam("now"))
)
ROTATE_REFRESH_TOKEN = (
    sa.update(refresh_tokens)
    .where(refresh_tokens.c.id == sa.bindparam("row_id"), refresh_tokens.c.rotated_at.is_(None))
    .values(rotated_at=sa.bindparam("now"), successor_hash=sa.bindparam("successor"))
)
_rotated = refresh_tokens.alias("rotated")
#: the loser of a rotation, or a later presentation of the rotated token: it may have the
#: successor again only if that is the one rotated from it within the grace and is still
#: unused. One statement, and a write: the successor's row stays locked (PostgreSQL) or the
#: database (SQLite) until commit, so its own rotation cannot slip in between.
REPRESENT_ROTATED = (
    sa.update(refresh_tokens)
    .where(
        refresh_tokens.c.token_hash == sa.bindparam("successor"),
        refresh_tokens.c.rotated_at.is_(None),
        sa.exists().where(
            _rotated.c.id == sa.bindparam("row_id"),
            _rotated.c.successor_hash == sa.bindparam("successor"),
            _rotated.c.rotated_at >= sa.bindparam("rotated_since"),
        ),
    )
    .values(rotated_at=refresh_tokens.c.rotated_at)  # changes nothing; takes the lock
)
REFRESH_TOKEN_EXISTS = sa.select(refresh_tokens.c.id).where(
    refresh_tokens.c.id == sa.bindparam("row_id")
)
INSERT_GRANT = sa.insert(grants)
INSERT_REFRESH_TOKEN = sa.insert(refresh_tokens)


def _columns(mapping: Any, table: sa.Table, prefix: str = "") -> dict[str, Any]:
    return {c.key: mapping[prefix + c.key] for c in table.c}


def load_client(conn: Connection, client_id: str) -> Client | None:
    row = conn.execute(_CLIENT, {"client_id": client_id}).first()
    return None if row is None else Client(**_columns(row._mapping, clients))


def load_refresh_token(conn: Connection, token_hash: str) -> RefreshToken | None:
    """The refresh token with its grant and the grant's user (None for a client's own)."""
    row = conn.execute(_REFRESH, {"token_hash": token_hash}).first()
    if row is None:
        return None
    found = row._mapping
    grant = Grant(**_columns(found, grants, "g_"))
    if found["u_id"] is not None:
        grant.user = User(**_columns(found, users, "u_"))
    token = RefreshToken(**_columns(found, refresh_tokens, "r_"))
    token.grant = grant
    return token


def credentials_grant(storage: Storage, client: Client) -> str:
    """The id of the grant every client_credentials token of ``client`` shares (its ``sid``).

    Made at the client's first such token: the conditional update decides a race between
    replicas, and the loser takes the winner's. After a revocation clears it (``Revoker``),
    the next token starts a new one. A token may still be signed with a grant revoked while
    its request was in flight: it is born revoked, which fails closed."""
    grant_id = client.credentials_grant_id
    while grant_id is None:
        with storage.writing() as conn:
            claimed = new_id()
            won = conn.execute(
                sa.update(clients)
                .where(clients.c.id == client.id, clients.c.credentials_grant_id.is_(None))
                .values(credentials_grant_id=claimed)
            ).rowcount
            if won:
                conn.execute(
                    sa.insert(grants).values(
                        id=claimed,
                        client_id=client.client_id,
                        user_id=None,
                        scope=client.scope,
                        auth_time=None,
                        created_at=time.time(),
                        expires_at=UNTIL_REVOKED,
                    )
                )
                grant_id = claimed
            else:
                row = conn.execute(
                    sa.select(clients.c.credentials_grant_id).where(clients.c.id == client.id)
                ).first()
                if row is None:  # deleted meanwhile
                    raise InvalidClientError(status_code=401, description="Unknown client.")
                grant_id = row[0]  # None again only if revoked meanwhile: claim anew
    return grant_id
