"""Initial access tokens (RFC 7591 §3): what a client must present to register itself when
``[registration] dynamic = "token"``. Made, listed and revoked by the CLI (``gateway
registration token``), spent by the registration endpoint.

A token is 256 random bits, shown once and kept as its SHA-256 hash, like every other secret
at rest. It allows ``uses_allowed`` registrations until ``expires_at``, unless revoked first.
A use is spent by one conditional update in the registering transaction: of two concurrent
registrations with a token's last use, exactly one wins, and a registration that fails spends
nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from gateway.accounts import storable
from gateway.errors import InvalidInput
from gateway.models import RegistrationToken, random_token, sha256

tokens = cast(sa.Table, RegistrationToken.__table__)

#: ``gateway registration token create`` without ``--ttl``: a day
DEFAULT_TTL = 86400
#: without ``--uses``: one registration
DEFAULT_USES = 1


@dataclass(frozen=True)
class NewToken:
    row: RegistrationToken
    #: the token itself: shown once, never stored
    token: str


def create_token(
    session: Session, ttl: int = DEFAULT_TTL, uses: int = DEFAULT_USES, now: float | None = None
) -> NewToken:
    if ttl <= 0:
        raise InvalidInput("--ttl must be a positive number of seconds")
    if uses <= 0:
        raise InvalidInput("--uses must be a positive number of registrations")
    now = time.time() if now is None else now
    token = random_token()
    row = RegistrationToken(
        token_hash=sha256(token), created_at=now, expires_at=now + ttl, uses_allowed=uses, uses=0
    )
    session.add(row)
    session.flush()
    return NewToken(row, token)


def list_tokens(session: Session) -> list[RegistrationToken]:
    """Every token not yet pruned, newest first."""
    return list(
        session.scalars(
            sa.select(RegistrationToken).order_by(
                RegistrationToken.created_at.desc(), RegistrationToken.id
            )
        )
    )


def status(row: RegistrationToken, now: float | None = None) -> str:
    """``active``, ``revoked``, ``expired`` or ``used`` (every use spent)."""
    now = time.time() if now is None else now
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    if row.uses >= row.uses_allowed:
        return "used"
    return "active"


def revoke_token(session: Session, token_id: str, now: float | None = None) -> bool:
    """Revoke the token ``token_id``; False when it was revoked already. ``InvalidInput``
    for an id that names no token."""
    row = session.get(RegistrationToken, token_id) if storable(token_id) else None
    if row is None:
        raise InvalidInput(f"no registration token with id {token_id!r}")
    if row.revoked_at is not None:
        return False
    row.revoked_at = time.time() if now is None else now
    return True


def _usable(token: str, now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        tokens.c.token_hash == sha256(token),
        tokens.c.revoked_at.is_(None),
        tokens.c.expires_at > now,
        tokens.c.uses < tokens.c.uses_allowed,
    )


def is_usable(conn: Connection, token: str, now: float | None = None) -> bool:
    """Whether ``token`` would allow a registration now (a read, before the body is)."""
    now = time.time() if now is None else now
    query = sa.select(tokens.c.id).where(_usable(token, now))
    return conn.execute(query).first() is not None


def spend(conn: Connection, token: str, now: float | None = None) -> bool:
    """Spend one use of ``token``, in the caller's transaction; False if it has none left
    (or is unknown, expired or revoked): the registration must then be refused."""
    now = time.time() if now is None else now
    spent = conn.execute(
        sa.update(tokens).where(_usable(token, now)).values(uses=tokens.c.uses + 1)
    ).rowcount
    return spent == 1
