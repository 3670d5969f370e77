"""The revocation sets: written durably by ``Revoker``, held in memory by ``RevocationCache``,
synced from the database, pushed between replicas by NOTIFY payloads."""

from __future__ import annotations

import itertools
import math
import time
import tracemalloc
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.config import Config
from gateway.housekeeping import prune_expired
from gateway.introspect import notify
from gateway.introspect.revocation import (
    SYNC_BATCH,
    RevocationCache,
    RevocationEntry,
    revoked_in_database,
)
from gateway.introspect.revoker import Revoker
from gateway.models import Revocation
from gateway.storage import Storage


def revoker_of(config: Config, storage: Storage, cache: RevocationCache) -> Revoker:
    return Revoker(storage, cache, config.tokens.access_token_ttl, config.tokens.leeway)


def test_a_revocation_applies_at_once_here_and_after_a_sync_elsewhere(
    config: Config, storage: Storage
) -> None:
    here, elsewhere = RevocationCache(), RevocationCache()
    revoker = revoker_of(config, storage, here)

    revoker.revoke(lambda s: revoker.jti(s, "jti-1", time.time() + 60))

    assert here.is_revoked("jti-1", None, None, 0)
    assert not elsewhere.is_revoked("jti-1", None, None, 0)
    assert elsewhere.sync(storage) == 1
    assert elsewhere.is_revoked("jti-1", None, None, 0)
    assert elsewhere.staleness() < 5


def test_a_full_reload_keeps_what_this_process_added_meanwhile(
    config: Config, storage: Storage
) -> None:
    cache = RevocationCache()
    revoker = revoker_of(config, storage, cache)
    revoker.revoke(lambda s: revoker.grants(s, ["grant-1"]))
    cache.add(RevocationEntry("jti", "local-only", time.time(), time.time() + 60))

    cache.sync(storage, full=True)

    assert cache.is_revoked(None, "grant-1", None, 0)
    assert cache.is_revoked("local-only", None, None, 0)


def test_subject_not_before_is_a_whole_second(config: Config, storage: Storage) -> None:
    """``iat`` is a whole second: a token issued later in the revoking second stays valid."""
    cache = RevocationCache()
    revoker = revoker_of(config, storage, cache)
    (entry,) = revoker.revoke(lambda s: revoker.subject(s, "user-1"))

    assert entry.not_before == math.floor(entry.not_before)
    assert not cache.is_revoked("j", "s", "user-1", entry.not_before)
    assert cache.is_revoked("j", "s", "user-1", entry.not_before - 1)
    assert not cache.is_revoked("j", "s", "user-2", entry.not_before - 1)


def test_expired_entries_are_pruned_in_memory_and_in_the_database(
    config: Config, storage: Storage
) -> None:
    cache = RevocationCache()
    revoker = revoker_of(config, storage, cache)
    past = time.time() - 1
    revoker.revoke(lambda s: revoker.jti(s, "old", past - config.tokens.leeway))
    revoker.revoke(lambda s: revoker.jti(s, "new", time.time() + 600))

    cache.prune()
    assert not cache.is_revoked("old", None, None, 0)
    assert cache.is_revoked("new", None, None, 0)
    assert prune_expired(storage)["revocations"] == 1
    fresh = RevocationCache()
    fresh.sync(storage)
    assert len(fresh) == 1


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([RevocationEntry("jti", "a", 1.0, 2.0)], id="one"),
        pytest.param([RevocationEntry("sid", f"g{i}", 1.5, 9.5) for i in range(20)], id="many"),
    ],
)
def test_notify_payload_round_trip(entries: list[RevocationEntry]) -> None:
    assert notify.decode(notify.encode(entries)) == entries


def test_a_revocation_too_big_for_one_payload_asks_listeners_to_sync() -> None:
    entries = [RevocationEntry("sid", "g" * 32 + str(i), 1.0, 2.0) for i in range(400)]
    assert notify.encode(entries) == "sync"
    assert notify.decode("sync") is None
    assert notify.decode("[[1]]") is None  # malformed: sync rather than guess


@pytest.mark.parametrize(
    ("jti", "sid", "sub", "iat_offset", "revoked"),
    [
        pytest.param("jti-x", None, None, 0, True, id="jti"),
        pytest.param("other", "grant-x", None, 0, True, id="sid"),
        pytest.param("other", None, "user-x", -1, True, id="sub-issued-before"),
        pytest.param("other", None, "user-x", 0, False, id="sub-issued-in-the-second"),
        pytest.param("other", "grant-y", "user-y", -1, False, id="unrelated"),
        pytest.param(None, None, None, 0, False, id="nothing-to-match"),
    ],
)
def test_the_table_and_the_sets_apply_one_rule(
    config: Config,
    storage: Storage,
    jti: str | None,
    sid: str | None,
    sub: str | None,
    iat_offset: int,
    revoked: bool,
) -> None:
    cache = RevocationCache()
    revoker = revoker_of(config, storage, cache)
    revoker.revoke(lambda s: revoker.jti(s, "jti-x", time.time() + 60))
    revoker.revoke(lambda s: revoker.grants(s, ["grant-x"]))
    (entry,) = revoker.revoke(lambda s: revoker.subject(s, "user-x"))
    iat = entry.not_before + iat_offset

    with storage.session() as session:
        in_table = revoked_in_database(session, jti, sid, sub, iat)
    assert cache.is_revoked(jti, sid, sub, iat) is in_table is revoked


def test_a_jti_stays_revoked_until_its_entry_expires_and_is_gone_a_second_after() -> None:
    cache = RevocationCache()
    cache.add(RevocationEntry("jti", "j", 1.0, 1000.5))

    cache.prune(1000.5)
    assert cache.is_revoked("j", None, None, 0)
    cache.prune(1001.0)
    assert not cache.is_revoked("j", None, None, 0)
    assert len(cache) == 0


def test_a_jti_revoked_twice_keeps_the_later_expiry() -> None:
    cache = RevocationCache()
    cache.add(RevocationEntry("jti", "j", 1.0, 2000.0))
    # e.g. the CLI's guess, then the token's own exp
    cache.add(RevocationEntry("jti", "j", 2.0, 1100.0))
    cache.add(RevocationEntry("jti", "k", 1.0, 1100.0))

    cache.prune(1500.0)
    assert cache.is_revoked("j", None, None, 0)
    assert not cache.is_revoked("k", None, None, 0)
    cache.prune(2000.0)
    assert not cache.is_revoked("j", None, None, 0)


def test_a_sync_streams_more_rows_than_one_batch_and_resumes_after_the_last(
    storage: Storage,
) -> None:
    now = time.time()
    rows = [
        {"kind": "jti", "value": f"jti-{i}", "not_before": now, "expires_at": now + 600}
        for i in range(2 * SYNC_BATCH + 7)
    ]
    with storage.session() as session:
        session.execute(sa.insert(Revocation), rows)
    cache = RevocationCache()

    assert cache.sync(storage, full=True) == len(rows)
    assert len(cache) == len(rows)
    assert all(cache.is_revoked(row["value"], None, None, 0) for row in rows)
    with storage.session() as session:
        session.add(Revocation(kind="sid", value="late", not_before=now, expires_at=now + 600))
    cache.sync(storage)
    assert cache.is_revoked(None, "late", None, 0)
    assert len(cache) == len(rows) + 1


class _DoesNothing:
    def is_revoked(self, jti: str | None, sid: str | None, sub: str | None, iat: float) -> bool:
        return False


def _peak_allocation(cache: Any, calls: int) -> int:
    """Bytes allocated at the peak of ``calls`` rounds of lookups, above what was held before."""
    tracemalloc.reset_peak()
    held, _ = tracemalloc.get_traced_memory()
    for _ in itertools.repeat(None, calls):
        cache.is_revoked("jti-x", None, None, 0.0)  # hit
        cache.is_revoked("other", "grant-x", None, 0.0)  # hit
        cache.is_revoked("other", "grant-y", "user-x", 0.0)  # hit
        cache.is_revoked("other", "grant-y", "user-x", 2e9)  # subject known, issued after
        cache.is_revoked("other", "grant-y", "user-y", 0.0)  # miss
        cache.is_revoked(None, None, None, 0.0)
    _, peak = tracemalloc.get_traced_memory()
    return peak - held


def test_is_revoked_allocates_nothing() -> None:
    """On the proxy's hot path: a lookup costs no memory allocation, hit or miss."""
    cache = RevocationCache()
    cache.add(RevocationEntry("jti", "jti-x", 1.0, 2e9))
    cache.add(RevocationEntry("sid", "grant-x", 1.0, 2e9))
    cache.add(RevocationEntry("sub", "user-x", 1e9, 2e9))
    tracemalloc.start()
    try:
        nothing = _DoesNothing()
        for probe in (cache, nothing, cache, nothing):  # warm up (and specialise) both
            _peak_allocation(probe, 10)
        assert _peak_allocation(cache, 1000) == _peak_allocation(nothing, 1000)
    finally:
        tracemalloc.stop()
