"""Argon2id password hashing, with equal work for unknown users (no timing oracle)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


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
