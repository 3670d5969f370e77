"""RFC 6749 §10.10 / the issue's rule 3: an unknown user costs what a wrong password costs.

Timing is not asserted (benchmarks measure speed, tests do not); the work is: exactly one
Argon2 verification on either path, against a hash made with the same parameters."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher

from gateway import passwords
from gateway.app import GatewayApp
from gateway.models import User


class CountingHasher(PasswordHasher):
    calls = 0

    def verify(self, hash: Any, password: Any) -> bool:
        type(self).calls += 1
        return super().verify(hash, password)


@pytest.mark.parametrize("email", ["alice@example.com", "nobody@example.com"])
def test_one_argon2_verification_whether_or_not_the_user_exists(
    app: GatewayApp, user: User, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "hashing", passwords.Hashing(hasher))
    CountingHasher.calls = 0

    assert app.gateway.password_check.check(email, "not the password", "10.0.0.1") is None
    assert CountingHasher.calls == 1
