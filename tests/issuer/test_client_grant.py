"""A client_credentials token (RFC 6749 §4.4) is written nowhere: every token of a client
carries the ``sid`` of one grant, the client's own, made at its first token.

Each way to revoke such a token still holds, in this process, in a restarted one (an app or a
server process started afresh on the same database) and in another replica: by ``jti``
(RFC 7009: the revocation row carries the presented token's ``exp``), by client (``gateway
client delete`` revokes the client's grant), and by subject (``sub`` is the client id: "not
before", and the client's grant, which the next token replaces)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.errors import InvalidToken
from gateway.housekeeping import prune_expired
from gateway.models import Client, Grant, RefreshToken, Revocation, new_id
from gateway.storage import Storage
from tests.support.app import ISSUER, PASSWORD, make_client
from tests.support.issuer import decode, is_active, revoke, running, token_request, tokens
from tests.support.live import free_port, running_gateway


def cc_token(client: TestClient, registered: Any) -> str:
    issued = tokens(token_request(client, registered, grant_type="client_credentials"))
    return str(issued["access_token"])


def row_counts(storage: Storage) -> dict[str, int]:
    with storage.session() as session:
        return {
            model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            for model in (Grant, RefreshToken, Revocation, Client)
        }


def own_grant_id(storage: Storage, client_id: str) -> str | None:
    with storage.session() as session:
        row = session.scalars(sa.select(Client).where(Client.client_id == client_id)).one()
        return row.credentials_grant_id


def test_tokens_of_a_client_share_its_grant_and_write_nothing(client, storage, confidential):
    first = cc_token(client, confidential)
    before = row_counts(storage)
    issued = [first, *(cc_token(client, confidential) for _ in range(3))]
    assert row_counts(storage) == before  # no row per token, in any table
    (sid,) = {decode(client, token)["sid"] for token in issued}
    assert len({decode(client, token)["jti"] for token in issued}) == len(issued)
    assert own_grant_id(storage, confidential.client_id) == sid
    with storage.session() as session:
        grant = session.get(Grant, sid)
        assert (grant.client_id, grant.user_id, grant.revoked_at) == (
            confidential.client_id,
            None,
            None,
        )


def test_each_client_has_a_grant_of_its_own(client, storage, confidential):
    other = make_client(storage, name="Other service")
    sids = {decode(client, cc_token(client, c))["sid"] for c in (confidential, other, confidential)}
    assert len(sids) == 2


@pytest.mark.parametrize("round_", range(3))
def test_two_replicas_racing_for_the_first_token_share_one_grant(app, config, storage, round_):
    """Two replicas (two apps, each its own engine and, on SQLite, its own writer lock) ask
    for a new client's first token at once: the database decides, the loser takes the
    winner's grant."""
    registered = make_client(storage, name=f"service {round_}")
    other = create_app(config)
    barrier = threading.Barrier(2)
    sids: list[str] = []

    def first_token(replica: Any) -> None:
        own = TestClient(replica, base_url=ISSUER)  # no lifespan: nothing to start for this
        barrier.wait()
        sids.append(decode(own, cc_token(own, registered))["sid"])

    try:
        threads = [threading.Thread(target=first_token, args=(r,)) for r in (app, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        other.gateway.storage.dispose()
    assert len(sids) == 2 and len(set(sids)) == 1, sids
    with storage.session() as session:
        count = sa.select(sa.func.count()).where(Grant.client_id == registered.client_id)
        assert session.scalar(count) == 1


# --- each way to revoke -------------------------------------------------------------------------


def test_revoking_one_token_by_jti_leaves_the_others(client, config, confidential, resource_server):
    revoked, kept = cc_token(client, confidential), cc_token(client, confidential)
    assert revoke(client, confidential, revoked).status_code == 200
    assert not is_active(client, resource_server, revoked)
    assert is_active(client, resource_server, kept)
    with running(config) as restarted:  # nothing remembered: what the database holds
        assert not is_active(restarted, resource_server, revoked)
        assert is_active(restarted, resource_server, kept)
        with pytest.raises(InvalidToken):  # the proxy's in-memory sets, loaded at start
            restarted.app.gateway.validator.validate(revoked, audience=None)


def test_deleting_the_client_revokes_its_tokens(client, storage, config, confidential, gw):
    issued = [cc_token(client, confidential) for _ in range(2)]
    rs = make_client(storage, name="RS", grant_types=("client_credentials",), can_introspect=True)
    assert gw("client", "delete", "--", confidential.client_id)[0] == 0
    for token in issued:
        assert not is_active(client, rs, token)
    with running(config) as restarted:
        for token in issued:
            assert not is_active(restarted, rs, token)
            with pytest.raises(InvalidToken):
                restarted.app.gateway.validator.validate(token, audience=None)


def test_a_grant_per_token_from_before_is_revoked_with_its_client(
    app, client, storage, confidential, resource_server, gw
):
    """Before revision 0003 every client_credentials token had a grant of its own."""
    legacy_sid = new_id()
    with storage.session() as session:
        session.add(
            Grant(
                id=legacy_sid,
                client_id=confidential.client_id,
                user_id=None,
                expires_at=time.time() + 3600,
            )
        )
    claims = decode(client, cc_token(client, confidential))
    legacy = app.gateway.keyring.sign({**claims, "jti": new_id(), "sid": legacy_sid})
    assert is_active(client, resource_server, legacy)
    assert gw("client", "delete", "--", confidential.client_id)[0] == 0
    assert not is_active(client, resource_server, legacy)


def test_revoking_the_client_as_subject_ends_its_tokens_and_starts_a_new_grant(
    app, client, storage, config, confidential, resource_server
):
    # tokens of the revocation's own second: "not before" (whole seconds) would not refuse
    # them, the revoked grant does
    issued = [cc_token(client, confidential) for _ in range(2)]
    old_sid = decode(client, issued[0])["sid"]
    revoker = app.gateway.revoker
    revoker.revoke(lambda s: revoker.subject(s, confidential.client_id))
    assert own_grant_id(storage, confidential.client_id) is None

    later = cc_token(client, confidential)
    assert decode(client, later)["sid"] != old_sid
    assert is_active(client, resource_server, later)
    with running(config) as restarted:
        for token in issued:
            assert not is_active(restarted, resource_server, token)
        assert is_active(restarted, resource_server, later)


# --- the grant's life in storage ------------------------------------------------------------


def test_housekeeping_keeps_a_live_client_grant_and_prunes_a_revoked_one(
    app, client, storage, config, confidential
):
    sid = decode(client, cc_token(client, confidential))["sid"]
    prune_expired(storage, time.time() + 10 * 365 * 86400)
    with storage.session() as session:
        assert session.get(Grant, sid) is not None  # it lasts until revoked
    revoker = app.gateway.revoker
    revoker.revoke(lambda s: revoker.subject(s, confidential.client_id))
    horizon = config.tokens.access_token_ttl + config.tokens.leeway
    prune_expired(storage, time.time() + horizon + 1)
    with storage.session() as session:
        assert session.get(Grant, sid) is None  # no token it could match is valid any more


# --- across a restart of the server process -------------------------------------------------


@pytest.mark.live
def test_every_revocation_holds_after_the_server_restarts(tmp_path: Path, database_url: str):
    port = free_port()  # both runs are one deployment: one issuer, keys folder and database
    folder, issuer = tmp_path / "gateway", f"http://127.0.0.1:{port}"
    with running_gateway(folder, database_url, issuer=issuer, port=port) as first:
        rs = first.create_client("RS", grant_types=("client_credentials",), introspect=True)
        service = first.create_client("service", grant_types=("client_credentials",))
        deleted = first.create_client("deleted", grant_types=("client_credentials",))
        app = first.create_client("app", grant_types=("password", "refresh_token"))
        email = first.create_user("carol@example.com")
        by_jti, kept, of_deleted = (
            obtain(first.base_url, service, grant_type="client_credentials"),
            obtain(first.base_url, service, grant_type="client_credentials"),
            obtain(first.base_url, deleted, grant_type="client_credentials"),
        )
        of_user = obtain(
            first.base_url, app, grant_type="password", username=email, password=PASSWORD
        )
        revoked = httpx.post(
            f"{first.base_url}/oauth/revoke", data={"token": by_jti}, auth=basic(service)
        )
        assert revoked.status_code == 200
        first.cli("client", "delete", "--", deleted["client_id"])
        first.cli("token", "revoke", "--user", email)
        issued = (by_jti, kept, of_deleted, of_user)
        assert [active(first.base_url, rs, t) for t in issued] == [False, True, False, False]
    with running_gateway(folder, database_url, issuer=issuer, port=port) as second:
        assert [active(second.base_url, rs, t) for t in issued] == [False, True, False, False]


def basic(client: dict[str, Any]) -> tuple[str, str]:
    return client["client_id"], client["client_secret"]


def obtain(base_url: str, client: dict[str, Any], **form: str) -> str:
    answer = httpx.post(f"{base_url}/oauth/token", data=form, auth=basic(client))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def active(base_url: str, rs: dict[str, Any], token: str) -> bool:
    answer = httpx.post(f"{base_url}/oauth/introspect", data={"token": token}, auth=basic(rs))
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["active"])
