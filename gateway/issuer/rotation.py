"""Refresh-token rotation and reuse detection: the rule, in one place (RFC 6749 §6, §10.4;
RFC 9700 §4.14.2).

- **Rotation** (``tokens.rotate_refresh_tokens``): every refresh hands out a new refresh token
  in the same grant (the family, the tokens' ``sid``) and retires the one presented. Off, the
  presented token stays valid until its grant expires, and no new one is issued.
- **One durable transaction, race-safe**: the presented token is retired by a conditional
  update (``rotated_at IS NULL``) in the transaction that stores its successor, committed
  before the answer. Of two concurrent refreshes with one token, exactly one updates the row.
- **Reuse revokes the family**: a retired token presented again means it leaked, to the client
  or to whoever presents it (RFC 9700 §4.14.2), so the whole grant is revoked (every access and
  refresh token of it) and the answer is ``invalid_grant``. So is the loser of a race.
- **The grace** (``tokens.refresh_reuse_grace``): within that many seconds of the rotation,
  the retired token presented again (two tabs refreshing at once) gets the *same* successor
  once more, never a second one, as long as that successor is unused; its string is derived
  from the presented token (``successor_token``), only its hash is stored. Past the grace, or
  once the successor has been used, it is reuse as above.
- **DPoP binding** (RFC 9449 §5): a successor is bound to the key the refresh proved when the
  client is public (``dpop_tokens.refresh_binding``), so a bound token's successors stay bound
  to its key; the grace hands the successor out again only to a request with the same binding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidGrantError

from gateway.introspect.revoker import Revoker
from gateway.issuer.oauth_request import MAX_CREDENTIAL_LENGTH
from gateway.issuer.records import (
    Replayed,
    insert_refresh_token,
    load_refresh_token,
    refresh_tokens,
    revoke_family,
    revoked_on_replay,
)
from gateway.keys import session_secret
from gateway.models import RefreshToken, sha256
from gateway.storage import Storage

#: the retirement: of two concurrent uses of one refresh token, one updates its row
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
        # RFC 9449 §5: handed out again only to a request proving the key it is bound to
        refresh_tokens.c.dpop_jkt.is_not_distinct_from(sa.bindparam("jkt")),
    )
    .values(rotated_at=refresh_tokens.c.rotated_at)  # changes nothing; takes the lock
)
REFRESH_TOKEN_EXISTS = sa.select(refresh_tokens.c.id).where(
    refresh_tokens.c.id == sa.bindparam("row_id")
)

#: what the successor key is for, so that it can never be mistaken for another use of the secret
_SUCCESSOR_CONTEXT = b"gateway refresh-token successor v1"


def successor_token(secret: bytes, presented: str) -> str:
    """The refresh token that replaces ``presented``: HMAC-SHA256 of it, URL-safe, as long as a
    ``random_token``.

    Derived rather than random, so that a second presentation of the same token within
    ``tokens.refresh_reuse_grace`` (two tabs refreshing at once) recomputes the very token the
    first was given, while only its hash is stored. The key comes from ``secret``, the
    ``keys/session.key`` every replica already shares (``gateway.keys.session_secret``):
    256 random bits, made by ``gateway init``, never sent anywhere; a key of its own is derived
    from it (HMAC with ``_SUCCESSOR_CONTEXT``), so no successor is ever a valid cookie MAC and no
    cookie MAC a successor. Without the secret nothing is derivable: a successor is as
    unguessable as a random token. A replaced secret only breaks the successors of tokens
    rotated just before, and fails closed: their second presentation counts as reuse."""
    key = hmac.new(secret, _SUCCESSOR_CONTEXT, hashlib.sha256).digest()
    digest = hmac.new(key, presented.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class RefreshRotation:
    """What the refresh_token grant asks of its refresh tokens, by the rule above.

    ``rotates``: ``tokens.rotate_refresh_tokens``; ``grace``: ``tokens.refresh_reuse_grace``;
    ``keys_dir``: where ``keys/session.key`` is, read at each use so that every replica derives
    successors with the secret on disk now."""

    def __init__(
        self, storage: Storage, revoker: Revoker, keys_dir: Path, rotates: bool, grace: float
    ) -> None:
        self.storage = storage
        self.revoker = revoker
        self.keys_dir = keys_dir
        self.rotates = rotates
        self.grace = grace

    def find(self, presented: str) -> RefreshToken | None:
        """The refresh token ``presented`` names, if it may still be redeemed (unexpired, its
        grant not revoked, not retired but within the grace). A token retired before the grace
        is reuse: its family is revoked, and it redeems nothing."""
        if len(presented) > MAX_CREDENTIAL_LENGTH:
            return None
        token_hash = sha256(presented)
        token = self.storage.read(lambda conn: load_refresh_token(conn, token_hash))
        if token is None:
            return None
        now = time.time()
        if token.rotated_at is not None and now - token.rotated_at > self.grace:
            # within the grace ``retire`` decides, in its transaction: the same successor, or reuse
            revoke_family(self.revoker, token.grant_id)
            return None
        if token.expires_at <= now or token.grant.revoked_at is not None:
            return None
        return token

    def successor(self, presented: str, generated: str) -> str:
        """The refresh token to hand out for ``presented``: with a grace, derived from it, so
        that a second presentation within the grace computes the same; else ``generated``."""
        if not self.grace:
            return generated
        return successor_token(session_secret(self.keys_dir), presented)

    def retire(
        self, old: RefreshToken, successor: str | None, client_id: str, jkt: str | None = None
    ) -> None:
        """Retire ``old`` and store ``successor`` (if rotating), bound to the DPoP key ``jkt``
        (RFC 9449 §5; None: unbound), in one transaction; raise ``InvalidGrantError`` for reuse
        (the family then revoked) or for a token revoked since it was read. Within the grace,
        the successor stored already goes out again only for the same binding: the retired
        token presented with another key (or none) is reuse."""
        now = time.time()
        with revoked_on_replay(self.revoker), self.storage.writing() as conn:
            if self.rotates:
                row = {"row_id": old.id, "successor": successor and sha256(successor)}
                if not conn.execute(ROTATE_REFRESH_TOKEN, {**row, "now": now}).rowcount:
                    # Retired already, by a concurrent request or an earlier one. Within the
                    # grace the successor (derived from the presented token, so the same
                    # string) goes out again, as long as it is the one stored and is unused;
                    # otherwise this is reuse.
                    if not self.grace or not successor:
                        raise Replayed(old.grant_id)
                    again = {**row, "rotated_since": now - self.grace, "jkt": jkt}
                    if conn.execute(REPRESENT_ROTATED, again).rowcount:
                        return  # handed out again: it is stored already
                    raise Replayed(old.grant_id)
            elif conn.execute(REFRESH_TOKEN_EXISTS, {"row_id": old.id}).first() is None:
                raise InvalidGrantError("The refresh token is no longer valid.")  # revoked since
            if successor:
                insert_refresh_token(conn, successor, old.grant, client_id, now, jkt)
