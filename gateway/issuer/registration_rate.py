"""At most ``[registration] max_per_address_per_hour`` registrations per client address, over
any hour, counted in the database so every replica and worker shares the count.

An address is the client's as the login throttle sees it (``ForwardedPolicy.client_address``
behind ``[proxy] trusted_proxies``, IPv6 by its /64: ``throttle.address_key``). Each
registration is one ``client_registrations`` row, written in the registering transaction before
the count is read, so a refused registration (or any that fails) leaves nothing behind and a
client that keeps trying never pushes its wait further. Concurrent registrations from one
address take turns: on PostgreSQL a transaction-scoped advisory lock on the address; on SQLite
the insert itself, which takes the database's one write lock. The count they read is exact.
"""

from __future__ import annotations

import math
import time
from typing import cast

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import OAuth2Error
from sqlalchemy.engine import Connection

from gateway.models import ClientRegistration

registrations = cast(sa.Table, ClientRegistration.__table__)

HOUR = 3600.0


class TooManyRegistrations(OAuth2Error):
    """429 (RFC 6585 §4) in RFC 7591 §3.2.2's shape, with when to retry (RFC 9110 §10.2.3)."""

    error = "too_many_requests"
    status_code = 429

    def __init__(self, limit: int, retry_after: float) -> None:
        super().__init__(
            f"This address registered {limit} clients within the last hour; retry later."
        )
        #: whole seconds, at least 1
        self.retry_after = max(1, math.ceil(retry_after))


class RegistrationRate:
    def __init__(self, limit: int, postgres: bool) -> None:
        self.limit = limit
        self.postgres = postgres

    def count(self, conn: Connection, address: str, now: float | None = None) -> None:
        """Count a registration from ``address`` (an ``address_key``) in the caller's
        transaction; ``TooManyRegistrations`` when it would be one too many (the caller's
        transaction then rolls back, taking the row with it)."""
        now = time.time() if now is None else now
        if self.postgres:
            key = sa.func.hashtextextended(address, 0)
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        conn.execute(
            sa.insert(registrations).values(address=address, at=now, expires_at=now + HOUR)
        )
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(registrations.c.at)).where(
                registrations.c.address == address, registrations.c.at > now - HOUR
            )
        ).one()
        if row[0] > self.limit:
            raise TooManyRegistrations(self.limit, row[1] + HOUR - now)
