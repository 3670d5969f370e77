"""Writing revocations: durable in the database first, then applied to this process's cache.

Every function that revokes takes a session and returns the cache entries it wrote; the caller
commits, then hands them to ``RevocationCache.add`` (``Revoker`` does both), so an endpoint
answers only after the revocation is committed, and this process enforces it at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.introspect.notify import publish
from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.models import AuthorizationCode, Client, Grant, RefreshToken, Revocation
from gateway.storage import Storage


class Revoker:
    def __init__(self, storage: Storage, cache: RevocationCache, access_ttl: int, leeway: int):
        self.storage = storage
        self.cache = cache
        self.leeway = leeway
        #: an entry is kept until every access token it could match has expired
        self.horizon = access_ttl + leeway

    def revoke(self, action: Callable[[Session], list[RevocationEntry]]) -> list[RevocationEntry]:
        """Run ``action`` in a transaction, commit, then enforce its entries in this process."""
        with self.storage.session(write=True) as session:
            entries = action(session)
            publish(session, entries)
        self.apply(entries)
        return entries

    def apply(self, entries: Iterable[RevocationEntry]) -> None:
        for entry in entries:
            self.cache.add(entry)

    def _entry(self, session: Session, kind: str, value: str, expires_at: float) -> RevocationEntry:
        # "not before" is compared with ``iat``, a whole second: a fractional time would also
        # refuse tokens issued later within the same second. Tokens issued earlier in that
        # second are refused through their grants, which are revoked with the subject.
        not_before = float(math.floor(time.time()))
        session.add(
            Revocation(kind=kind, value=value, not_before=not_before, expires_at=expires_at)
        )
        return RevocationEntry(kind, value, not_before, expires_at)

    def jti(self, session: Session, jti: str, exp: float) -> list[RevocationEntry]:
        """One access token, until it would have expired anyway."""
        return [self._entry(session, "jti", jti, exp + self.leeway)]

    def grants(self, session: Session, grant_ids: Iterable[str]) -> list[RevocationEntry]:
        """Whole grants: their refresh tokens stop working, their access tokens are refused.

        A revoked grant is kept (pruned) until no token it could match is valid; a client
        whose own grant it was starts a new one at its next client_credentials token."""
        ids = list(dict.fromkeys(grant_ids))
        if not ids:
            return []
        now = time.time()
        kept_until = now + self.horizon
        session.execute(
            sa.update(Grant)
            .where(Grant.id.in_(ids), Grant.revoked_at.is_(None))
            .values(
                revoked_at=now,
                expires_at=sa.case(
                    (Grant.expires_at > kept_until, kept_until), else_=Grant.expires_at
                ),
            )
        )
        session.execute(sa.delete(RefreshToken).where(RefreshToken.grant_id.in_(ids)))
        session.execute(
            sa.update(Client)
            .where(Client.credentials_grant_id.in_(ids))
            .values(credentials_grant_id=None)
        )
        return [self._entry(session, "sid", gid, kept_until) for gid in ids]

    def subject(self, session: Session, subject: str) -> list[RevocationEntry]:
        """Every token of a subject issued before now, refresh tokens and codes included.

        The subject is a user, or a client for its own tokens (``sub`` is its client_id,
        RFC 9068 §2.2): then its client_credentials grant ends with it."""
        own = sa.and_(Grant.user_id.is_(None), Grant.client_id == subject)
        grant_ids = session.scalars(
            sa.select(Grant.id).where(
                sa.or_(Grant.user_id == subject, own), Grant.revoked_at.is_(None)
            )
        ).all()
        # a code not yet redeemed would start a new grant, its tokens issued after "now"
        session.execute(
            sa.delete(AuthorizationCode).where(
                AuthorizationCode.user_id == subject, AuthorizationCode.used_at.is_(None)
            )
        )
        entries = self.grants(session, grant_ids)
        entries.append(self._entry(session, "sub", subject, time.time() + self.horizon))
        return entries

    def client(self, session: Session, client_id: str) -> list[RevocationEntry]:
        """Every grant of a client (when the client is deleted)."""
        grant_ids = session.scalars(
            sa.select(Grant.id).where(Grant.client_id == client_id, Grant.revoked_at.is_(None))
        ).all()
        return self.grants(session, grant_ids)
