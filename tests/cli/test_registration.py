"""``gateway registration token create|list|revoke``: initial access tokens shown once, kept
as hashes, listed with their state, revoked by id; and the token a registration then carries."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, RegistrationConfig
from gateway.models import RegistrationToken, sha256
from gateway.storage import Storage

ISSUER = "http://127.0.0.1:8000"
METADATA = {
    "redirect_uris": ["http://127.0.0.1/cb"],
    "application_type": "native",
    "token_endpoint_auth_method": "none",
}


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_create_shows_the_token_once_and_keeps_its_hash(storage: Storage, gw) -> None:
    code, out, err = gw("registration", "token", "create", "--ttl", "600", "--uses", "3")
    assert code == 0, err
    token = re.search(r"^token: (\S+)$", out, re.M)
    assert token and "shown once" in out and "3 registration(s)" in out
    assert 'dynamic is "off"' in err  # it works only once the operator turns "token" on
    with storage.session() as session:
        (row,) = session.scalars(sa.select(RegistrationToken)).all()
    assert row.token_hash == sha256(token.group(1))
    assert row.uses_allowed == 3
    assert row.expires_at == pytest.approx(row.created_at + 600)
    assert row.id in out

    code, out, _ = gw("registration", "token", "create", "--json")
    created = json.loads(out)
    assert set(created) == {"id", "token", "expires_at", "uses"} and created["uses"] == 1


def test_list_shows_each_tokens_state_never_the_token(storage: Storage, gw) -> None:
    made = [json.loads(gw("registration", "token", "create", "--json")[1]) for _ in range(2)]
    assert gw("registration", "token", "revoke", made[0]["id"])[0] == 0
    code, out, _ = gw("registration", "token", "list", "--json")
    assert code == 0
    listed = {row["id"]: row for row in json.loads(out)}
    assert listed[made[0]["id"]]["status"] == "revoked"
    assert listed[made[1]["id"]]["status"] == "active"
    assert listed[made[1]["id"]]["uses"] == 0 and listed[made[1]["id"]]["uses_allowed"] == 1
    _, text, _ = gw("registration", "token", "list")
    for token in made:
        assert token["token"] not in out and token["token"] not in text
    assert re.search(rf"^{made[0]['id']}\s+revoked\s+used 0/1", text, re.M), text


def test_revoke_says_when_there_was_nothing_to_do(storage: Storage, gw) -> None:
    made = json.loads(gw("registration", "token", "create", "--json")[1])
    assert "revoked registration token" in gw("registration", "token", "revoke", made["id"])[1]
    code, out, _ = gw("registration", "token", "revoke", made["id"])
    assert code == 0 and "revoked already" in out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("registration", "token", "create", "--ttl", "0"), id="ttl"),
        pytest.param(("registration", "token", "create", "--uses", "-1"), id="uses"),
        pytest.param(("registration", "token", "create", "--ttl", "soon"), id="ttl-text"),
        pytest.param(("registration", "token", "revoke", "no-such-id"), id="unknown"),
        pytest.param(("registration", "token", "revoke"), id="revoke-needs-id"),
        pytest.param(("registration",), id="needs-token"),
        pytest.param(("registration", "token"), id="needs-action"),
    ],
)
def test_usage_errors_exit_2_with_one_line(storage: Storage, gw, argv) -> None:
    code, out, err = gw(*argv)
    one_line_error(code, err)
    assert out == ""


def test_the_token_lets_a_client_register_as_often_as_it_allows(
    config: Config, storage: Storage, gw
) -> None:
    made = json.loads(gw("registration", "token", "create", "--uses", "1", "--json")[1])
    token_mode = dataclasses.replace(config, registration=RegistrationConfig(dynamic="token"))
    app = create_app(token_mode)
    with TestClient(app, base_url=ISSUER) as client:
        headers = {"Authorization": f"Bearer {made['token']}"}
        assert client.post("/oauth/register", json=METADATA, headers=headers).status_code == 201
        assert client.post("/oauth/register", json=METADATA, headers=headers).status_code == 401
    app.gateway.storage.dispose()
    _, out, _ = gw("registration", "token", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["status"] == "used" and listed["uses"] == 1
