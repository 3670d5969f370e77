"""Revocation through a live server: RFC 7009 at /oauth/revoke, and ``gateway token revoke``
run as a separate process; RFC 7662 introspection and the token endpoint see the result."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from authlib.integrations.httpx_client import OAuthError

from tests.support.live import LiveGateway, RedirectTarget, wait_until
from tests.support.oauth import AuthorizationFlow, introspect, oauth_client, password_token

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def app(live_gateway: LiveGateway, redirect_target: RedirectTarget) -> dict[str, Any]:
    return live_gateway.create_client(
        "Orders app",
        grant_types=("authorization_code", "password", "refresh_token"),
        scope="orders:read",
        redirect_uris=(redirect_target.redirect_uri,),
    )


def refresh(gateway: LiveGateway, client: dict[str, Any], refresh_token: str) -> dict[str, Any]:
    with oauth_client(client) as oauth:
        token: dict[str, Any] = oauth.refresh_token(
            gateway.metadata()["token_endpoint"], refresh_token=refresh_token
        )
    return token


def refresh_error(gateway: LiveGateway, client: dict[str, Any], refresh_token: str) -> str:
    with pytest.raises(OAuthError) as failed:
        refresh(gateway, client, refresh_token)
    return str(failed.value.error)


def revoke(gateway: LiveGateway, client: dict[str, Any], token: str, hint: str | None) -> None:
    with oauth_client(client) as oauth:
        response = oauth.revoke_token(
            gateway.metadata()["revocation_endpoint"], token=token, token_type_hint=hint
        )
    assert response.status_code == 200, response.text  # RFC 7009 §2.2


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param("refresh_token", id="hint-refresh-token"),
        pytest.param(None, id="no-hint"),
        pytest.param("access_token", id="wrong-hint"),  # RFC 7009 §2.1: search anyway
    ],
)
def test_revoking_a_refresh_token_ends_its_access_tokens(
    live_gateway: LiveGateway,
    app: dict[str, Any],
    live_resource_server: dict[str, Any],
    alice: str,
    hint: str | None,
) -> None:
    token = password_token(live_gateway, app, alice)
    assert introspect(live_gateway, live_resource_server, token["access_token"])["active"] is True

    revoke(live_gateway, app, token["refresh_token"], hint)

    assert introspect(live_gateway, live_resource_server, token["access_token"]) == {
        "active": False
    }
    assert introspect(live_gateway, live_resource_server, token["refresh_token"]) == {
        "active": False
    }
    assert refresh_error(live_gateway, app, token["refresh_token"]) == "invalid_grant"


def test_revoking_an_access_token_leaves_its_grant(
    live_gateway: LiveGateway, app: dict[str, Any], live_resource_server: dict[str, Any], alice: str
) -> None:
    token = password_token(live_gateway, app, alice)

    revoke(live_gateway, app, token["access_token"], "access_token")

    assert introspect(live_gateway, live_resource_server, token["access_token"]) == {
        "active": False
    }
    renewed = refresh(live_gateway, app, token["refresh_token"])
    assert introspect(live_gateway, live_resource_server, renewed["access_token"])["active"] is True


def test_cli_revokes_every_token_of_a_user(
    live_gateway: LiveGateway,
    app: dict[str, Any],
    live_resource_server: dict[str, Any],
    alice: str,
    email: str,
) -> None:
    user = live_gateway.create_user(email)
    tokens = [password_token(live_gateway, app, user) for _ in range(2)]  # two grants
    bystander = password_token(live_gateway, app, alice)

    out = live_gateway.cli("token", "revoke", "--user", user)
    revoked_by = time.time()

    assert "2 grant(s) ended" in out
    for token in tokens:
        assert introspect(live_gateway, live_resource_server, token["access_token"]) == {
            "active": False
        }
        assert introspect(live_gateway, live_resource_server, token["refresh_token"]) == {
            "active": False
        }
        assert refresh_error(live_gateway, app, token["refresh_token"]) == "invalid_grant"
    assert (
        introspect(live_gateway, live_resource_server, bystander["access_token"])["active"] is True
    )
    # The user is not locked out: signing in again gives a working token. Known limitation:
    # "not before" is compared with the whole-second iat, so a token issued in the same second
    # as the revocation is refused too; sign in again once that second is over.
    wait_until(lambda: time.time() >= math.floor(revoked_by) + 1, "the next second")
    again = password_token(live_gateway, app, user)
    assert introspect(live_gateway, live_resource_server, again["access_token"])["active"] is True


def test_cli_revocation_voids_codes_not_yet_redeemed(
    live_gateway: LiveGateway,
    app: dict[str, Any],
    redirect_target: RedirectTarget,
    email: str,
) -> None:
    user = live_gateway.create_user(email)
    uri = redirect_target.redirect_uri
    with AuthorizationFlow(live_gateway, app, uri, "orders:read") as flow:
        assert flow.decide(flow.login(user), "allow")["code"]

        live_gateway.cli("token", "revoke", "--user", user)

        # the code was issued before the revocation: it must not buy fresh tokens after it
        with pytest.raises(OAuthError) as failed:
            flow.fetch_token()
    assert failed.value.error == "invalid_grant"
