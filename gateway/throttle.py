"""Login throttling that holds across replicas and cannot be used to lock a user out.

Every password check that fails is one ``login_failures`` row (the user's keyed hash, the
client's address, the known-device cookie it came with if any, the time), so all replicas and
workers count together. A check that succeeds writes nothing, unless that user had failed from
that address (its rows go: the user typed it right in the end). Before a password is checked,
one read decides, over the last ``window`` seconds:

1. **the address**: ``max_address_failures`` failures from it, for any users, refuse it for
   the rest of the window (until the oldest of those leaves it);
2. **the user from that address**: ``max_failures`` failures refuse that pair likewise;
3. **the user from anywhere**: once the user has ``max_failures`` failures over all addresses,
   every attempt for that user, from any address (a fresh one too), must wait
   ``2 ** (n - max_failures)`` seconds, at most ``max_user_delay``, after the user's last
   failure (OWASP's Authentication Cheat Sheet, "Account Lockout": failures count against
   the account, not the source address). Never a lock: an attempt that is refused writes
   nothing and so never extends a wait. However many addresses a guesser has, it gets about
   one guess at a user per ``max_user_delay``.

The wait falls on the real user too, unless the browser is one they signed in with before: a
**known-device cookie** (``gateway.issuer.devices``, OWASP's "device cookies"), presented at
the login page for the user it names, skips rule 3 (never 1 or 2) while it is within its
``device_ttl``, was issued after the user's devices were last forgotten (``device_resets``,
``gateway user devices forget``), and has fewer than ``max_failures`` failures of its own in
the window: a stolen cookie buys a guesser a handful of guesses, no more. The password grant
presents no device.

An address is the peer's, or the right-most untrusted ``X-Forwarded-For`` entry from a peer in
``[proxy] trusted_proxies`` (``ForwardedPolicy.client_address``); IPv6 addresses count by /64,
which one host can usually fill. Unknown users are counted exactly like known ones, so the
answers never tell them apart. Concurrent attempts all read before any writes: the budget can
be exceeded by the attempts in flight at once (bounded by ``[passwords] max_concurrent`` and
``max_queued`` per process), never more.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from gateway.config import ThrottleConfig
from gateway.models import DeviceReset, LoginFailure
from gateway.storage import Storage

failures = cast(sa.Table, LoginFailure.__table__)
resets = cast(sa.Table, DeviceReset.__table__)

_USER_CONTEXT = b"gateway login-throttle user v1"
#: what counts as one address: IPv6 networks of this prefix
IPV6_PREFIX = 64


#: which budget refused an attempt (the ``key`` label of ``gateway_login_throttled_total``)
ThrottleKey = Literal["address", "user_address", "user"]
THROTTLE_KEYS: tuple[ThrottleKey, ...] = ("address", "user_address", "user")


class TooManyAttempts(Exception):
    """Refused by the throttle without checking the password; retry in ``retry_after`` s."""

    def __init__(self, key: ThrottleKey, retry_after: float) -> None:
        super().__init__(key, retry_after)
        self.key = key
        #: whole seconds, at least 1 (RFC 9110 §10.2.3 delay-seconds)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True)
class KnownDevice:
    """What a verified known-device cookie says (``gateway.issuer.devices``): whose it is (the
    throttle's ``user_key``), which device, and when it was issued (seconds)."""

    user_key: str
    device_id: str
    issued_at: float


@dataclass(frozen=True)
class Attempt:
    """Who is trying, as the throttle counts them; ``pair_failures``: recent failures of this
    user from this address, read when the attempt was admitted; ``device_id``: the known
    device it came with, if that names this user (its failures count against it)."""

    user_key: str
    address: str
    pair_failures: int
    device_id: str | None = None


def address_key(address: str) -> str:
    """The throttle's unit for a client address: an IPv4 address, an IPv6 /64 network (an
    IPv4-mapped IPv6 address is the IPv4 one); anything else (a test client's name) as is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False)
        return str(network)
    return str(ip)


def _nth_latest(where: sa.ColumnElement[bool], n: int) -> sa.ScalarSelect[float]:
    """The time of the n-th most recent failure matching ``where`` (NULL if fewer)."""
    return (
        sa.select(failures.c.at)
        .where(where)
        .order_by(failures.c.at.desc())
        .limit(1)
        .offset(n - 1)
        .scalar_subquery()
    )


class LoginThrottle:
    def __init__(self, storage: Storage, config: ThrottleConfig, secret: bytes) -> None:
        self.storage = storage
        self.config = config
        # a key of its own from the deployment's session secret: a user_key is no cookie MAC
        self._key = hmac.new(secret, _USER_CONTEXT, hashlib.sha256).digest()
        #: called with the budget that refused an attempt (the gateway's metrics)
        self.on_refusal: Callable[[ThrottleKey], None] = lambda key: None
        since = sa.bindparam("since", type_=sa.Float)
        user_key = sa.bindparam("user_key", type_=sa.String)
        address = (failures.c.address == sa.bindparam("address")) & (failures.c.at > since)
        user = (failures.c.user_key == user_key) & (failures.c.at > since)
        pair = user & (failures.c.address == sa.bindparam("address"))
        # no device: NULL, which equals no row's device_id
        device = (failures.c.device_id == sa.bindparam("device_id", type_=sa.String)) & (
            failures.c.at > since
        )
        count = sa.func.count(failures.c.id)
        self._standing = sa.select(
            _nth_latest(address, config.address_budget).label("address_nth"),
            sa.select(count).where(pair).scalar_subquery().label("pair_n"),
            _nth_latest(pair, config.max_failures).label("pair_nth"),
            sa.select(count).where(user).scalar_subquery().label("user_n"),
            sa.select(sa.func.max(failures.c.at)).where(user).scalar_subquery().label("user_last"),
            sa.select(count).where(device).scalar_subquery().label("device_n"),
            sa.select(resets.c.not_before)
            .where(resets.c.user_key == user_key)
            .scalar_subquery()
            .label("devices_not_before"),
        )

    def user_key(self, normalized_email: str) -> str:
        return hmac.new(self._key, normalized_email.encode(), hashlib.sha256).hexdigest()

    def admit(
        self,
        normalized_email: str,
        address: str,
        now: float | None = None,
        device: KnownDevice | None = None,
    ) -> Attempt:
        """The attempt, if the password may be checked now; else ``TooManyAttempts``.
        ``device``: a verified known-device cookie (the login page's), which may exempt the
        attempt from the per-user delay."""
        now = time.time() if now is None else now
        user, where = self.user_key(normalized_email), address_key(address)
        if device is not None and device.user_key != user:
            device = None  # another user's device vouches for nothing here
        params = {
            "since": now - self.config.window,
            "address": where,
            "user_key": user,
            "device_id": device.device_id if device else None,
        }
        row = self.storage.read(lambda conn: conn.execute(self._standing, params).one())
        refusal = self._refusal(row, now, device is not None and self._known(row, device))
        if refusal is not None:
            self.on_refusal(refusal.key)
            raise refusal
        return Attempt(user, where, row.pair_n, device.device_id if device else None)

    def _known(self, row: sa.Row[Any], device: KnownDevice) -> bool:
        """Whether ``device`` (the user's own) still vouches for its user: issued after their
        devices were last forgotten, and with fewer than ``max_failures`` recent failures."""
        not_before = row.devices_not_before
        forgotten = not_before is not None and device.issued_at <= not_before
        return not forgotten and row.device_n < self.config.max_failures

    def _refusal(self, row: sa.Row[Any], now: float, known_device: bool) -> TooManyAttempts | None:
        window = self.config.window
        if row.address_nth is not None:
            return TooManyAttempts("address", row.address_nth + window - now)
        if row.pair_nth is not None:
            return TooManyAttempts("user_address", row.pair_nth + window - now)
        excess = row.user_n - self.config.max_failures
        if excess >= 0 and not known_device:
            delay = min(self.config.max_user_delay, 2.0**excess)
            wait = row.user_last + delay - now
            if wait > 0:
                return TooManyAttempts("user", wait)
        return None

    def failed(self, attempt: Attempt, now: float | None = None) -> None:
        now = time.time() if now is None else now
        row = {
            "user_key": attempt.user_key,
            "address": attempt.address,
            "device_id": attempt.device_id,
            "at": now,
            "expires_at": now + self.config.window,
        }
        with self.storage.writing() as conn:
            conn.execute(failures.insert(), row)

    def succeeded(self, attempt: Attempt) -> None:
        if not attempt.pair_failures:
            return  # the common case writes nothing
        with self.storage.writing() as conn:
            conn.execute(
                failures.delete().where(
                    (failures.c.user_key == attempt.user_key)
                    & (failures.c.address == attempt.address)
                )
            )

    def forget_devices(self, normalized_email: str, now: float | None = None) -> None:
        """Every known-device cookie of the user issued until ``now`` vouches for nothing any
        more, at every replica (each reads ``device_resets`` in ``admit``)."""
        now = time.time() if now is None else now
        dialect = postgresql if self.storage.is_postgres else sqlite
        user_key = self.user_key(normalized_email)
        upsert = dialect.insert(resets).values(user_key=user_key, not_before=now)
        upsert = upsert.on_conflict_do_update(
            index_elements=[resets.c.user_key], set_={"not_before": upsert.excluded.not_before}
        )
        with self.storage.writing() as conn:
            conn.execute(upsert)
