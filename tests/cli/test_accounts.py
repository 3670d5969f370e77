"""``gateway consent list`` and ``gateway consent revoke`` (issue 10, point 4), in-process as in
tests/cli/test_main.py. Revoking a consent ends the grants issued to that client for that user:
its access tokens are refused by introspection and by the proxy (a real request through a route
to the demo's echo upstream), its refresh tokens by the token endpoint, its unredeemed codes by
the token endpoint too. Consent rows are made with the ``Consent`` model, as the consent page
would store them (the union of the allowed scopes)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.config import Config, RouteConfig
from gateway.demo.echo import echo_upstream_thread
from gateway.models import Client, Consent, User
from gateway.storage import Storage
from tests.support.app import Registered, make_client, make_user
from tests.support.issuer import (
    get_code,
    is_active,
    oauth_error,
    password_grant,
    pkce_pair,
    redeem,
    refresh,
    running,
    tokens,
)

CLI = Callable[..., tuple[Any, str, str]]


@pytest.fixture
def proxied(config: Config, storage: Storage) -> Iterator[TestClient]:
    """The gateway with ``GET /orders`` (scope orders:read) routed to a real echo upstream."""
    with echo_upstream_thread() as upstream:
        route = RouteConfig(
            path="/orders", upstream=upstream, name="orders", scopes=(("orders:read",),)
        )
        with running(dataclasses.replace(config, routes=(route,))) as app_client:
            yield app_client


def through_proxy(app_client: TestClient, access_token: str) -> int:
    """The status of a proxied request, once this replica's revocation sets are current (what
    its LISTEN or its poll does within ``sync_interval``; here at once, deterministically)."""
    gateway = app_client.app.gateway  # type: ignore[attr-defined]
    gateway.revocations.sync(gateway.storage)
    response = app_client.get("/orders/7", headers={"Authorization": f"Bearer {access_token}"})
    return response.status_code


def remember(storage: Storage, user: User, client: Registered, scope: str) -> None:
    with storage.session() as session:
        session.add(Consent(user_id=user.id, client_id=client.client_id, scope=scope))


def consents(gw: CLI, email: str) -> list[dict[str, Any]]:
    code, out, err = gw("consent", "list", "--user", email, "--json")
    assert code == 0, err
    listed: list[dict[str, Any]] = json.loads(out)
    return listed


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def other_app(storage: Storage) -> Registered:
    return make_client(storage, name="Another app")


# --- consent list -----------------------------------------------------------------------------


def test_list_json_and_text(storage, user, confidential, other_app, gw):
    remember(storage, user, confidential, "orders:read profile")
    remember(storage, user, other_app, "orders:write")
    bob = make_user(storage, "bob@example.com")
    remember(storage, bob, other_app, "profile")

    listed = consents(gw, "Alice@Example.com")  # emails are matched as stored: lower case
    assert [row["client_name"] for row in listed] == ["Another app", "Test app"]
    assert set(listed[0]) == {
        "client_id",
        "client_name",
        "scope",
        "resources",
        "created_at",
        "updated_at",
    }
    by_client = {row["client_id"]: row for row in listed}
    assert by_client[confidential.client_id]["scope"] == ["orders:read", "profile"]
    assert by_client[confidential.client_id]["resources"] is None  # none named
    assert by_client[other_app.client_id]["scope"] == ["orders:write"]
    assert by_client[other_app.client_id]["created_at"].endswith("Z")

    code, out, _ = gw("consent", "list", "--user", user.email)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith(f"{confidential.client_id}  Test app  scope='orders:read profile'")


def test_list_without_consents(user, gw):
    assert consents(gw, user.email) == []
    code, out, _ = gw("consent", "list", "--user", user.email)
    assert (code, out) == (0, f"no consents for {user.email}\n")


# --- consent revoke ---------------------------------------------------------------------------


def test_revoke_one_client_ends_its_tokens_only(
    storage, user, confidential, other_app, resource_server, client, proxied, gw
):
    bob = make_user(storage, "bob@example.com")
    for who in (user, bob):
        remember(storage, who, confidential, "orders:read")
    remember(storage, user, other_app, "orders:read")
    revoked = tokens(password_grant(client, confidential, scope="orders:read"))
    kept = tokens(password_grant(client, other_app, scope="orders:read"))
    bobs = tokens(password_grant(client, confidential, email=bob.email, scope="orders:read"))
    assert through_proxy(proxied, revoked["access_token"]) == 200

    code, out, _ = gw("consent", "revoke", "--user", user.email, "--client", confidential.client_id)

    assert code == 0
    assert "1 consent(s) forgotten, 1 grant(s) ended, 0 unused code(s) voided" in out
    assert not is_active(client, resource_server, revoked["access_token"])
    assert not is_active(client, resource_server, revoked["refresh_token"])
    oauth_error(refresh(client, confidential, revoked["refresh_token"]), 400, "invalid_grant")
    assert through_proxy(proxied, revoked["access_token"]) == 401
    # the user's other client and the other user of this client are untouched
    for other in (kept, bobs):
        assert is_active(client, resource_server, other["access_token"])
        assert through_proxy(proxied, other["access_token"]) == 200
    assert [c["client_id"] for c in consents(gw, user.email)] == [other_app.client_id]
    assert [c["client_id"] for c in consents(gw, bob.email)] == [confidential.client_id]


def test_revoke_every_client_then_again_is_a_no_op(
    storage, user, confidential, other_app, resource_server, client, proxied, gw
):
    remember(storage, user, confidential, "orders:read")
    remember(storage, user, other_app, "orders:read")
    issued = [
        tokens(password_grant(client, app, scope="orders:read"))
        for app in (confidential, other_app, other_app)
    ]

    code, out, _ = gw("consent", "revoke", "--user", user.email)

    assert code == 0
    assert "every client: 2 consent(s) forgotten, 3 grant(s) ended" in out
    for token in issued:
        assert not is_active(client, resource_server, token["access_token"])
        assert through_proxy(proxied, token["access_token"]) == 401
    assert consents(gw, user.email) == []

    # idempotent, for scripts: nothing left is not an error
    code, out, _ = gw("consent", "revoke", "--user", user.email)
    assert (code, out) == (
        0,
        f"nothing to revoke: {user.email} has no consent and no grants for every client\n",
    )
    code, out, _ = gw("consent", "revoke", "--user", user.email, "--client", other_app.client_id)
    assert code == 0 and out.startswith("nothing to revoke")

    # the user is not locked out: a new sign-in after the revocation works
    again = tokens(password_grant(client, confidential, scope="orders:read"))
    assert is_active(client, resource_server, again["access_token"])


def test_revoke_voids_a_code_not_yet_redeemed(storage, user, public, client, gw):
    """A code issued before the revocation must not buy tokens after it."""
    verifier, challenge = pkce_pair()
    code_ = get_code(client, public, user, challenge=challenge, scope="orders:read")

    code, out, _ = gw("consent", "revoke", "--user", user.email, "--client", public.client_id)

    assert code == 0
    assert "0 grant(s) ended, 1 unused code(s) voided" in out
    oauth_error(redeem(client, public, code_, verifier), 400, "invalid_grant")


def test_client_id_starting_with_dash(storage, user, confidential, gw):
    with storage.session() as session:
        session.execute(
            sa.update(Client)
            .where(Client.client_id == confidential.client_id)
            .values(client_id="-dash-id")
        )
    dashed = dataclasses.replace(confidential, client_id="-dash-id")
    remember(storage, user, dashed, "orders:read")

    # argparse reads "-dash-id" as an option: one usage line, nothing revoked
    code, _, err = gw("consent", "revoke", "--user", user.email, "--client", "-dash-id")
    one_line_error(code, err)
    assert len(consents(gw, user.email)) == 1

    code, out, _ = gw("consent", "revoke", "--user", user.email, "--client=-dash-id")
    assert code == 0 and "1 consent(s) forgotten" in out
    assert consents(gw, user.email) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ("consent", "list", "--user", "nobody@example.com"), "no user with email", id="list"
        ),
        pytest.param(
            ("consent", "revoke", "--user", "nobody@example.com"), "no user with email", id="revoke"
        ),
        pytest.param(
            ("consent", "revoke", "--user", "alice@example.com", "--client", "no-such-client"),
            "no client with id 'no-such-client'",
            id="unknown-client",
        ),
        pytest.param(
            ("consent", "revoke", "--user", "alice@example.com", "--client", "a\x00b"),
            "no client with id",
            id="nul-in-client-id",
        ),
        pytest.param(("consent", "list", "--user", "a\x00b"), "no user", id="nul-in-email"),
        pytest.param(("consent", "revoke"), "--user", id="revoke-needs-user"),
        pytest.param(("consent",), "required", id="needs-action"),
    ],
)
def test_refusals_exit_2_with_one_line(user, gw, argv, message):
    code, out, err = gw(*argv)
    assert message in one_line_error(code, err)
    assert out == ""


def test_client_delete_drops_its_consents(storage, user, confidential, other_app, gw):
    remember(storage, user, confidential, "orders:read")
    remember(storage, user, other_app, "orders:read")

    code, _, _ = gw("client", "delete", "--", confidential.client_id)

    assert code == 0
    assert [c["client_id"] for c in consents(gw, user.email)] == [other_app.client_id]
    with storage.session() as session:
        left = session.scalars(
            sa.select(Consent).where(Consent.client_id == confidential.client_id)
        ).all()
    assert left == []
