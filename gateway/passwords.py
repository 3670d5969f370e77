"""Argon2id password hashing, with equal work for unknown users (no timing oracle), and the
bounded pool every verification on a request path runs on.

One Argon2id verification (t=3, 64 MiB, 4 lanes) is made expensive on purpose, in CPU time
and in 64 MiB of memory, so that guessing is too. ``PasswordPool`` runs them on
``max_concurrent`` threads of their own and admits at most ``max_queued`` more to wait; past
that it raises ``PasswordsBusy`` (503 ``temporarily_unavailable`` with ``Retry-After``) at once
instead of queueing without end.

Where the wait happens: the verification sits deep inside Authlib's sync grant code (after the
client is authenticated and the request validated), which the issuer already runs on Starlette's
threadpool; the login page calls the same ``PasswordCheck.check`` there. So the worker thread
blocks on the pool's future. Admitting before the threadpool instead would need a second door
per caller and would reserve a slot for every request that merely says ``grant_type=password``,
valid or not. The cost of the blocking wait is bounded: a refused verification returns at once,
and an admitted one holds one threadpool thread, so at most ``max_concurrent + max_queued``
threads wait on password work; ``Gateway.start`` grows Starlette's threadpool (anyio's default
limiter, 40 threads) by that many, so the 40 stay free for every other request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import PasswordsBusy


class Hashing:
    """A hasher and a dummy hash made with the same parameters: verifying a password for a
    user that does not exist costs exactly what verifying a real one does."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher
        self.dummy_hash = hasher.hash("gateway-dummy-password-for-unknown-users")


#: argon2-cffi's defaults: Argon2id, RFC 9106 "low memory" profile (t=3, m=64 MiB, p=4)
hashing = Hashing(PasswordHasher())


def hash_password(password: str) -> str:
    return hashing.hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; ``password_hash=None`` (no such user) costs the same."""
    try:
        matched = hashing.hasher.verify(password_hash or hashing.dummy_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


class PasswordPool:
    """``verify_password`` on ``max_concurrent`` threads, with at most ``max_queued`` waiting.

    ``start`` and ``shutdown`` follow the app's lifespan; a pool used without one (the CLI,
    tests driving ``Server`` directly) starts its threads on first use."""

    def __init__(self, max_concurrent: int, max_queued: int) -> None:
        self.max_concurrent = max_concurrent
        self.capacity = max_concurrent + max_queued
        self._lock = threading.Lock()
        self._admitted = 0
        self._executor: ThreadPoolExecutor | None = None
        #: called once per ``PasswordsBusy`` raised (the gateway counts them)
        self.on_refusal: Callable[[], None] = lambda: None

    @property
    def admitted(self) -> int:
        """Verifications running or waiting now."""
        return self._admitted

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.max_concurrent, thread_name_prefix="gateway-passwords"
            )
        return self._executor

    def shutdown(self) -> None:
        """Wait for the verifications in flight, then stop the threads."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """``verify_password`` on the pool, blocking the caller until it is done; raises
        ``PasswordsBusy`` when ``max_concurrent + max_queued`` are already admitted. An unknown
        user (``password_hash=None``) is admitted and refused exactly like a known one."""
        with self._lock:
            if self._admitted >= self.capacity:
                self.on_refusal()
                raise PasswordsBusy()
            # submitted under the lock: a concurrent shutdown waits for it instead of refusing it
            future = self._start().submit(verify_password, password_hash, password)
            self._admitted += 1
        try:
            return future.result()
        finally:
            with self._lock:
                self._admitted -= 1
