"""The revocation sets: written durably by ``Revoker``, held in memory by ``RevocationCache``,
synced from the database, pushed between replicas by NOTIFY payloads."""

from __future__ import annotations

import math
import time

import pytest

from gateway.config import Config
from gateway.housekeeping import prune_expired
from gateway.introspect import notify
from gateway.introspect.revocation import Entry, RevocationCache, revoked_in_database
from gateway.introspect.revoker import Revoker
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
    cache.add(Entry("jti", "local-only", time.time(), time.time() + 60))

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
        pytest.param([Entry("jti", "a", 1.0, 2.0)], id="one"),
        pytest.param([Entry("sid", f"g{i}", 1.5, 9.5) for i in range(20)], id="many"),
    ],
)
def test_notify_payload_round_trip(entries: list[Entry]) -> None:
    assert notify.decode(notify.encode(entries)) == entries


def test_a_revocation_too_big_for_one_payload_asks_listeners_to_sync() -> None:
    entries = [Entry("sid", "g" * 32 + str(i), 1.0, 2.0) for i in range(400)]
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
