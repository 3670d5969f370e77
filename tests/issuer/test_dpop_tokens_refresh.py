"""Refresh tokens and DPoP (RFC 9449 §5): a public client's refresh token is bound to the key
that proved the request it was issued to, and its successors stay bound; a refresh without a
proof by that key is ``invalid_grant`` and rotates nothing. A confidential client's refresh
token is not bound, but each new access token is bound to the key its refresh proves. The
reuse grace keeps the binding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.config import Config
from gateway.models import RefreshToken, User, sha256
from gateway.storage import Storage
from tests.support.app import PASSWORD, Registered, with_tokens
from tests.support.dpop import ProofKey, with_proof
from tests.support.issuer import decode, oauth_error, running, tokens

GRACE = 30


def first_tokens(
    client: TestClient, registered: Registered, user: User, key: ProofKey | None
) -> dict[str, Any]:
    form = {"grant_type": "password", "username": user.email, "password": PASSWORD}
    return tokens(with_proof(client, registered, key, **form))


def refresh(client: TestClient, registered: Registered, token: str, key: ProofKey | None) -> Any:
    return with_proof(client, registered, key, grant_type="refresh_token", refresh_token=token)


def binding(storage: Storage, token: str) -> tuple[str | None, float | None]:
    """The stored refresh token's (dpop_jkt, rotated_at)."""
    with storage.session() as session:
        row = session.scalar(
            sa.select(RefreshToken).where(RefreshToken.token_hash == sha256(token))
        )
    assert row is not None
    return row.dpop_jkt, row.rotated_at


def cnf(client: TestClient, body: dict[str, Any]) -> Any:
    return decode(client, body["access_token"]).get("cnf")


# --- a public client's ---------------------------------------------------------------------------


def test_a_public_clients_refresh_token_is_bound_to_the_key(
    client: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    key = ProofKey()
    first = first_tokens(client, public, user, key)
    assert binding(storage, first["refresh_token"]) == (key.jkt, None)


@pytest.mark.parametrize("other", [None, "another-key"])
def test_a_bound_refresh_token_without_its_key_is_invalid_grant_and_rotates_nothing(
    client: TestClient, storage: Storage, public: Registered, user: User, other: str | None
) -> None:
    key = ProofKey()
    first = first_tokens(client, public, user, key)
    presented = None if other is None else ProofKey()
    oauth_error(refresh(client, public, first["refresh_token"], presented), 400, "invalid_grant")
    assert binding(storage, first["refresh_token"]) == (key.jkt, None)  # not rotated
    # and the family lives: the key's holder refreshes as before
    body = tokens(refresh(client, public, first["refresh_token"], key))
    assert body["token_type"] == "DPoP" and cnf(client, body) == {"jkt": key.jkt}


def test_the_successor_stays_bound(
    client: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    key = ProofKey()
    first = first_tokens(client, public, user, key)
    second = tokens(refresh(client, public, first["refresh_token"], key))
    assert binding(storage, second["refresh_token"]) == (key.jkt, None)
    oauth_error(refresh(client, public, second["refresh_token"], None), 400, "invalid_grant")
    oauth_error(refresh(client, public, second["refresh_token"], ProofKey()), 400, "invalid_grant")
    third = tokens(refresh(client, public, second["refresh_token"], key))
    assert cnf(client, third) == {"jkt": key.jkt}


def test_an_unbound_public_refresh_token_is_bound_by_its_first_proof(
    client: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    """The stricter reading: a refresh token issued to a public client with a proof is bound
    to its key, the successor of an unbound one too."""
    first = first_tokens(client, public, user, None)
    assert binding(storage, first["refresh_token"]) == (None, None)
    key = ProofKey()
    second = tokens(refresh(client, public, first["refresh_token"], key))
    assert binding(storage, second["refresh_token"])[0] == key.jkt
    oauth_error(refresh(client, public, second["refresh_token"], None), 400, "invalid_grant")


def test_an_unbound_public_refresh_token_refreshes_without_a_proof(
    client: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    first = first_tokens(client, public, user, None)
    second = tokens(refresh(client, public, first["refresh_token"], None))
    assert second["token_type"] == "Bearer"
    assert binding(storage, second["refresh_token"])[0] is None


# --- a confidential client's ---------------------------------------------------------------------


def test_a_confidential_clients_refresh_token_is_not_bound(
    client: TestClient, storage: Storage, confidential: Registered, user: User
) -> None:
    key = ProofKey()
    first = first_tokens(client, confidential, user, key)
    assert binding(storage, first["refresh_token"])[0] is None
    # a refresh without a proof: a bearer token
    second = tokens(refresh(client, confidential, first["refresh_token"], None))
    assert second["token_type"] == "Bearer" and cnf(client, second) is None
    assert binding(storage, second["refresh_token"])[0] is None


def test_a_confidential_refresh_binds_the_new_token_to_the_key_it_proves(
    client: TestClient, storage: Storage, confidential: Registered, user: User
) -> None:
    first_key, second_key = ProofKey(), ProofKey("RS256")
    first = first_tokens(client, confidential, user, first_key)
    second = tokens(refresh(client, confidential, first["refresh_token"], second_key))
    assert second["token_type"] == "DPoP" and cnf(client, second) == {"jkt": second_key.jkt}
    assert binding(storage, second["refresh_token"])[0] is None


# --- the reuse grace ---------------------------------------------------------------------------


@pytest.fixture
def graceful(config: Config, storage: Storage) -> Iterator[TestClient]:
    """An app with a 30 s reuse grace, on the same database and keys."""
    with running(with_tokens(config, refresh_reuse_grace=GRACE)) as test_client:
        yield test_client


def test_the_grace_hands_the_successor_again_only_to_the_key(
    graceful: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    key = ProofKey()
    first = first_tokens(graceful, public, user, key)
    second = tokens(refresh(graceful, public, first["refresh_token"], key))
    # presented again within the grace, without the key: refused, the family intact
    oauth_error(refresh(graceful, public, first["refresh_token"], None), 400, "invalid_grant")
    oauth_error(refresh(graceful, public, first["refresh_token"], ProofKey()), 400, "invalid_grant")
    again = tokens(refresh(graceful, public, first["refresh_token"], key))
    assert again["refresh_token"] == second["refresh_token"]
    assert cnf(graceful, again) == {"jkt": key.jkt}
    assert binding(storage, again["refresh_token"])[0] == key.jkt
    tokens(refresh(graceful, public, again["refresh_token"], key))


def test_the_grace_gives_a_successor_bound_since_to_no_other_binding(
    graceful: TestClient, storage: Storage, public: Registered, user: User
) -> None:
    """An unbound token whose first refresh proved a key: presented again without that key,
    it is two parties holding one token, reuse; the family is revoked."""
    first = first_tokens(graceful, public, user, None)
    key = ProofKey()
    second = tokens(refresh(graceful, public, first["refresh_token"], key))
    oauth_error(refresh(graceful, public, first["refresh_token"], None), 400, "invalid_grant")
    oauth_error(refresh(graceful, public, second["refresh_token"], key), 400, "invalid_grant")


def test_the_grace_for_a_confidential_client_keeps_rebinding(
    graceful: TestClient, confidential: Registered, user: User
) -> None:
    first = first_tokens(graceful, confidential, user, None)
    key = ProofKey()
    second = tokens(refresh(graceful, confidential, first["refresh_token"], None))
    again = tokens(refresh(graceful, confidential, first["refresh_token"], key))
    assert again["refresh_token"] == second["refresh_token"]
    assert cnf(graceful, again) == {"jkt": key.jkt}
