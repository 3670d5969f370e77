"""The validator remembers checked signatures, never the verdict: everything else is checked
on every use, and a retired key's tokens stop validating even when remembered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.errors import InvalidToken
from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.introspect.validator import BearerValidator
from gateway.keys import KeyRing, create_key, retire_key

ISSUER = "http://127.0.0.1:8000"


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    create_key(tmp_path, "ES256")
    return KeyRing(tmp_path)


def signed(ring: KeyRing, **claims: object) -> str:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "u1",
        "aud": ISSUER,
        "exp": now + 60,
        "iat": now,
        "jti": "j1",
        "client_id": "c1",
        "scope": "a",
        "sid": "s1",
    }
    return ring.sign({**base, **claims})


def test_a_remembered_token_is_still_checked_for_audience_and_revocation(ring: KeyRing) -> None:
    cache = RevocationCache()
    validator = BearerValidator(ring, cache, ISSUER)
    token = signed(ring)
    assert validator.validate(token, ISSUER).sub == "u1"

    with pytest.raises(InvalidToken, match="audience"):
        validator.validate(token, "http://other.example")
    cache.add(RevocationEntry("jti", "j1", time.time(), time.time() + 60))
    with pytest.raises(InvalidToken, match="revoked"):
        validator.validate(token, ISSUER)


def test_a_remembered_token_dies_with_its_retired_key(ring: KeyRing, tmp_path: Path) -> None:
    validator = BearerValidator(ring, RevocationCache(), ISSUER)
    old = ring.active_key.kid
    token = signed(ring)
    validator.validate(token, ISSUER)

    create_key(tmp_path, "ES256")
    retire_key(tmp_path, old)
    ring.reload_if_changed()

    with pytest.raises(InvalidToken, match="unknown signing key"):
        validator.validate(token, ISSUER)


def test_a_remembered_token_still_expires(ring: KeyRing, monkeypatch: pytest.MonkeyPatch) -> None:
    validator = BearerValidator(ring, RevocationCache(), ISSUER, leeway=0)
    now = time.time()
    token = signed(ring, exp=int(now) + 60)
    remembered = validator.validate(token, ISSUER)
    assert validator.validate(token, ISSUER) is remembered  # built once, not per use

    monkeypatch.setattr(time, "time", lambda: now + 61)
    with pytest.raises(InvalidToken, match="expired"):
        validator.validate(token, ISSUER)


def test_a_remembered_token_is_not_valid_before_its_time(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    validator = BearerValidator(ring, RevocationCache(), ISSUER, leeway=0)
    now = time.time()
    token = signed(ring, nbf=int(now) + 30)
    monkeypatch.setattr(time, "time", lambda: now + 31)
    validator.validate(token, ISSUER)

    monkeypatch.setattr(time, "time", lambda: now)
    with pytest.raises(InvalidToken, match="not yet valid"):
        validator.validate(token, ISSUER)
