"""Token revocation (RFC 7009): client-authenticated; an access token is revoked by its ``jti``,
a refresh token ends its whole grant (§2.1); anything else is answered 200 and changes nothing
(§2.2). The revocation is committed before the answer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.errors import InvalidToken
from gateway.models import Revocation
from gateway.storage import Storage
from tests.support.app import make_client
from tests.support.issuer import (
    REVOKE,
    decode,
    is_active,
    oauth_error,
    password_grant,
    refresh,
    revoke,
    token_request,
    tokens,
)


@pytest.fixture
def issued(client, user, confidential):
    return tokens(password_grant(client, confidential))


def revocation_rows(storage) -> int:
    with storage.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Revocation))


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param(None, id="no-hint"),
        pytest.param("access_token", id="right-hint"),
        pytest.param("refresh_token", id="wrong-hint"),
        pytest.param("something_else", id="unknown-hint"),
    ],
)
def test_revoking_an_access_token(app, client, confidential, resource_server, issued, hint):
    extra = {"token_type_hint": hint} if hint else {}
    response = revoke(client, confidential, issued["access_token"], **extra)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert not is_active(client, resource_server, issued["access_token"])
    with pytest.raises(InvalidToken):
        app.gateway.validator.validate(issued["access_token"], audience=None)
    # only that token: the grant goes on
    again = tokens(refresh(client, confidential, issued["refresh_token"]))
    assert is_active(client, resource_server, again["access_token"])


def test_revoking_a_refresh_token_ends_its_grant(
    app, client, confidential, resource_server, issued
):
    second = tokens(refresh(client, confidential, issued["refresh_token"]))
    assert revoke(client, confidential, second["refresh_token"]).status_code == 200
    oauth_error(refresh(client, confidential, second["refresh_token"]), 400, "invalid_grant")
    for access in (issued["access_token"], second["access_token"]):
        assert not is_active(client, resource_server, access)
        with pytest.raises(InvalidToken):
            app.gateway.validator.validate(access, audience=None)


def test_public_client_revokes_its_own_token(client, user, public, resource_server):
    issued = tokens(password_grant(client, public))
    assert revoke(client, public, issued["refresh_token"]).status_code == 200
    assert not is_active(client, resource_server, issued["access_token"])


def test_revocation_is_committed_before_the_answer(client, config, confidential, issued):
    jti = decode(client, issued["access_token"])["jti"]
    assert revoke(client, confidential, issued["access_token"]).status_code == 200
    other = Storage(config.database_url)  # another replica's view of the database
    try:
        with other.session() as session:
            row = session.scalars(sa.select(Revocation).where(Revocation.value == jti)).one()
        assert row.kind == "jti"
    finally:
        other.dispose()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("unknown-token", id="unknown"),
        pytest.param("a.b.c", id="jwt-shaped-garbage"),
        pytest.param("\u00e9\u00e8\u2603" * 10, id="unicode"),
        pytest.param("x" * 100_000, id="huge"),
        pytest.param("eyJhbGciOiJub25lIn0.e30.", id="alg-none"),
    ],
)
def test_unknown_or_garbage_tokens_answer_200_and_change_nothing(
    client, storage, confidential, resource_server, issued, token
):
    before = revocation_rows(storage)
    assert revoke(client, confidential, token).status_code == 200
    assert revocation_rows(storage) == before
    assert is_active(client, resource_server, issued["access_token"])


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_another_clients_token_answers_200_and_changes_nothing(
    client, storage, confidential, resource_server, issued, kind
):
    thief = make_client(storage, name="Other app")
    before = revocation_rows(storage)
    assert revoke(client, thief, issued[kind]).status_code == 200
    assert revocation_rows(storage) == before
    assert is_active(client, resource_server, issued["access_token"])
    tokens(refresh(client, confidential, issued["refresh_token"]))


def test_revoking_twice_is_fine(client, confidential, issued):
    for _ in range(2):
        assert revoke(client, confidential, issued["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(lambda c: (c.client_id, "wrong"), id="wrong-secret"),
        pytest.param(lambda c: ("nobody", "x"), id="unknown-client"),
        pytest.param(lambda c: None, id="no-auth"),
    ],
)
def test_client_authentication_is_required(client, confidential, resource_server, issued, auth):
    response = client.post(REVOKE, data={"token": issued["access_token"]}, auth=auth(confidential))
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")
    assert is_active(client, resource_server, issued["access_token"])


def test_missing_token_is_invalid_request(client, confidential):
    oauth_error(client.post(REVOKE, data={}, auth=confidential.auth), 400, "invalid_request")


def test_client_credentials_token_can_be_revoked(client, confidential, resource_server):
    access = tokens(token_request(client, confidential, grant_type="client_credentials"))
    assert revoke(client, confidential, access["access_token"]).status_code == 200
    assert not is_active(client, resource_server, access["access_token"])
