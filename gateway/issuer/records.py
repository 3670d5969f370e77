"""The rows the token and introspection endpoints read and write on every request, in
SQLAlchemy Core.

An ORM ``Session`` costs more than the query it runs, and so does building a statement
(SQLAlchemy caches its compiled form, keyed on the statement object). So the request path runs
the statements made once here, on a pooled connection, and builds the model objects Authlib
reads from the row, detached: nothing here is ever flushed.

A code or refresh token is used once: its use is a conditional update, and the loser of two
concurrent uses raises ``Replayed`` inside the transaction; ``revoked_on_replay`` then revokes
the grant the credential belongs to, the whole family (RFC 6749 §4.1.2, RFC 9700 §4.14.2).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, cast

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidGrantError
from sqlalchemy.engine import Connection

from gateway.accounts import storable
from gateway.introspect.revoker import Revoker
from gateway.models import (
    CLIENT_ID_LENGTH,
    METADATA_DOCUMENT,
    UNTIL_REVOKED,
    AuthorizationCode,
    Client,
    Grant,
    RefreshToken,
    User,
    new_id,
    sha256,
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


#: of two concurrent uses of a code, one updates its row
CONSUME_CODE = (
    sa.update(codes)
    .where(codes.c.id == sa.bindparam("row_id"), codes.c.used_at.is_(None))
    .values(used_at=sa.bindparam("now"))
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


class ClientLookup:
    """Authlib's ``query_client``: the client by its id, read on every request, never cached,
    so that a deleted client or a new secret holds at once on every replica.

    A client whose id is the URL of its metadata document is known only through that
    document (``client_documents.MetadataDocumentClients``, a subclass), and not at all while
    ``[registration] metadata_documents`` is off: its stored row is not enough. A client that
    registered itself may ask for any of ``registered_scopes`` (``[registration]
    allowed_scopes``), its own ``scope`` being only its default."""

    def __init__(self, storage: Storage, registered_scopes: frozenset[str] = frozenset()) -> None:
        self.storage = storage
        self.registered_scopes = registered_scopes

    def __call__(self, client_id: str) -> Client | None:
        if (
            not isinstance(client_id, str)
            or len(client_id) > CLIENT_ID_LENGTH
            or not storable(client_id)
        ):
            return None
        client = self.storage.read(lambda conn: load_client(conn, client_id))
        if client is not None and client.origin == METADATA_DOCUMENT:
            return None
        if client is not None and client.origin == "registration":
            client.widen_scopes(self.registered_scopes)
        return client


def insert_refresh_token(
    conn: Connection,
    refresh_token: str,
    grant: Grant,
    client_id: str,
    now: float,
    dpop_jkt: str | None = None,
) -> None:
    """Store ``refresh_token`` (its hash) in ``grant``, until the grant's absolute expiry;
    ``dpop_jkt``: the DPoP key it is bound to (RFC 9449 §5), if any."""
    conn.execute(
        INSERT_REFRESH_TOKEN,
        {
            "token_hash": sha256(refresh_token),
            "grant_id": grant.id,
            "client_id": client_id,
            # RFC 6749 §6: a new refresh token keeps the scope of the one it replaces
            "scope": grant.scope,
            "created_at": now,
            "expires_at": grant.expires_at,
            "rotated_at": None,
            "dpop_jkt": dpop_jkt,
        },
    )


class Replayed(Exception):
    """The code or refresh token was used already: this use lost the conditional update."""

    def __init__(self, grant_id: str | None) -> None:
        super().__init__(grant_id)
        self.grant_id = grant_id


def revoke_family(revoker: Revoker, grant_id: str | None) -> None:
    """Revoke the grant ``grant_id``: every access and refresh token issued in it, durably
    before the answer (``Revoker``); None (a code's ``grant_id`` column may be empty):
    nothing to revoke."""
    if grant_id:
        revoker.revoke(lambda session: revoker.grants(session, [grant_id]))


@contextlib.contextmanager
def revoked_on_replay(revoker: Revoker) -> Iterator[None]:
    """Around the transaction that uses a code or refresh token: a ``Replayed`` raised in it
    (the transaction rolled back) revokes the credential's grant and answers ``invalid_grant``.
    A credential used twice has leaked (RFC 9700 §4.14.2); RFC 6749 §4.1.2: the server "SHOULD
    revoke (when possible) all tokens previously issued based on that authorization code"."""
    try:
        yield
    except Replayed as replay:
        revoke_family(revoker, replay.grant_id)
        raise InvalidGrantError("The grant has already been used; it is now revoked.") from None


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
