"""RFC 6750 at the proxy: where the token is read, the exact challenges (with RFC 9728's
``resource_metadata``), the scope matrix."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from gateway import accounts
from gateway.app import create_app
from gateway.config import Config, RouteConfig
from gateway.demo.echo import echo_upstream_thread
from gateway.errors import InsufficientScope, MissingToken
from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.keys import KeyRing
from gateway.models import User
from gateway.proxy.auth import challenged
from gateway.proxy.routes import RouteTable
from gateway.resources import Resources
from gateway.storage import Storage
from tests.support.app import PASSWORD
from tests.support.cases import INVALID_TOKENS, SCOPE_MATRIX, bare, insufficient, invalid
from tests.support.proxy import AUDIENCE, GatewayFactory, raw_request, upstream_header

#: the orders route's challenge to a request without a token
NO_TOKEN = bare("orders:read")


@pytest.fixture
async def orders(gateway: GatewayFactory, echo: str) -> Any:
    return await gateway(
        f'[[routes]]\nname = "orders"\npath = "/orders"\nupstream = "{echo}"\n'
        f'scopes = ["orders:read"]\n'
    )


class TestTokenLocation:
    """RFC 6750 §2: the Authorization header only."""

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
    async def test_scheme_is_case_insensitive(
        self, orders: Any, mint: Callable[..., str], scheme: str
    ) -> None:
        response = await orders.client.get(
            "/orders", headers={"Authorization": f"{scheme} {mint('orders:read')}"}
        )
        assert response.status_code == 200

    async def test_no_token_is_a_challenge_without_an_error(self, orders: Any) -> None:
        response = await orders.client.get("/orders")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == NO_TOKEN
        assert response.json()["error"] == "unauthorized"

    async def test_other_schemes_are_no_token(self, orders: Any) -> None:
        response = await orders.client.get("/orders", headers={"Authorization": "Basic YTpi"})
        assert (response.status_code, response.headers["www-authenticate"]) == (
            401,
            bare("orders:read"),
        )

    async def test_query_token_ignored(self, orders: Any, mint: Callable[..., str]) -> None:
        response = await orders.client.get("/orders", params={"access_token": mint("orders:read")})
        assert (response.status_code, response.headers["www-authenticate"]) == (
            401,
            bare("orders:read"),
        )

    async def test_form_token_ignored(self, orders: Any, mint: Callable[..., str]) -> None:
        response = await orders.client.post("/orders", data={"access_token": mint("orders:read")})
        assert (response.status_code, response.headers["www-authenticate"]) == (
            401,
            bare("orders:read"),
        )


@pytest.mark.parametrize(("make", "description"), INVALID_TOKENS)
async def test_invalid_tokens(
    orders: Any,
    keyring: KeyRing,
    tmp_path: Path,
    make: Callable[[KeyRing, Path], str],
    description: str,
) -> None:
    response = await orders.client.get(
        "/orders", headers={"Authorization": f"Bearer {make(keyring, tmp_path)}"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == invalid(description, "orders:read")
    assert response.json() == {"error": "invalid_token", "error_description": description}


async def test_revocation_applies_to_the_next_request(
    orders: Any, mint: Callable[..., str], revocations: RevocationCache
) -> None:
    token = mint("orders:read", jti="jti-1")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await orders.client.get("/orders", headers=headers)).status_code == 200
    revocations.add(RevocationEntry("jti", "jti-1", time.time(), time.time() + 600))
    response = await orders.client.get("/orders", headers=headers)
    assert response.headers["www-authenticate"] == invalid("token revoked", "orders:read")


@pytest.mark.parametrize(("rule", "token_scope", "status"), SCOPE_MATRIX)
async def test_scope_matrix(
    gateway: GatewayFactory,
    echo: str,
    mint: Callable[..., str],
    rule: str,
    token_scope: str,
    status: int,
) -> None:
    gw = await gateway(f'[[routes]]\npath = "/r"\nupstream = "{echo}"\n{rule}\n')
    response = await gw.client.get("/r", headers={"Authorization": f"Bearer {mint(token_scope)}"})
    assert response.status_code == status
    if status == 403:
        # the first sufficient set is named (see gateway/proxy/auth.py)
        assert response.headers["www-authenticate"] == insufficient("a b")
        assert response.json() == {
            "error": "insufficient_scope",
            "error_description": "the token lacks a scope this resource requires",
            "scope": "a b",
        }


async def test_empty_scope_route_still_needs_a_valid_token(
    gateway: GatewayFactory, echo: str
) -> None:
    gw = await gateway(f'[[routes]]\npath = "/r"\nupstream = "{echo}"\n')
    assert (await gw.client.get("/r")).status_code == 401
    bad = await gw.client.get("/r", headers={"Authorization": "Bearer x.y.z"})
    assert bad.status_code == 401


async def test_public_route_ignores_any_token(gateway: GatewayFactory, echo: str) -> None:
    gw = await gateway(f'[[routes]]\npath = "/r"\npublic = true\nupstream = "{echo}"\n')
    response = await gw.client.get("/r", headers={"Authorization": "Bearer garbage"})
    assert response.status_code == 200
    assert upstream_header(response, "authorization") == []
    assert upstream_header(response, "x-forwarded-user") == []


async def test_route_audience_overrides_the_default(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str]
) -> None:
    gw = await gateway(
        f'[[routes]]\npath = "/r"\naudience = "https://orders.test"\nupstream = "{echo}"\n'
    )
    default = await gw.client.get("/r", headers={"Authorization": f"Bearer {mint(aud=AUDIENCE)}"})
    assert default.headers["www-authenticate"] == invalid(
        "wrong audience", metadata="https://orders.test/.well-known/oauth-protected-resource"
    )
    own = await gw.client.get(
        "/r", headers={"Authorization": f"Bearer {mint(aud='https://orders.test')}"}
    )
    assert own.status_code == 200


@pytest.mark.parametrize(
    ("email", "forward_token"),
    [
        pytest.param("alice@example.test", False, id="email-no-token"),
        pytest.param(None, True, id="no-email-token-forwarded"),
    ],
)
async def test_identity_headers_from_the_token(
    gateway: GatewayFactory,
    echo: str,
    mint: Callable[..., str],
    email: str | None,
    forward_token: bool,
) -> None:
    gw = await gateway(
        f'[[routes]]\npath = "/r"\nupstream = "{echo}"\n'
        f"forward_token = {str(forward_token).lower()}\n"
    )
    token = mint("b a", email=email)
    response = await gw.client.get("/r", headers={"Authorization": f"Bearer {token}"})
    assert upstream_header(response, "x-forwarded-user") == ["alice"]
    assert upstream_header(response, "x-forwarded-client-id") == ["app-1"]
    assert upstream_header(response, "x-forwarded-scopes") == ["a b"]
    assert upstream_header(response, "x-forwarded-email") == ([email] if email else [])
    assert upstream_header(response, "authorization") == (
        [f"Bearer {token}"] if forward_token else []
    )


MCP = "https://api.example.test/mcp"
MCP_METADATA = "https://api.example.test/.well-known/oauth-protected-resource/mcp"
RESOURCES = (
    '[[routes]]\nname = "mcp"\npath = "/mcp"\nupstream = "{echo}"\n'
    f'audience = "{MCP}"\nscopes = [["mcp:use", "extra"], ["alt"]]\n'
    '[[routes]]\nname = "orders"\npath = "/orders"\nupstream = "{echo}"\n'
    'scopes = ["orders:read"]\n'
    '[[routes]]\nname = "free"\npath = "/free"\nupstream = "{echo}"\n'
)


class TestChallengesNameTheResource:
    """RFC 9728 §5.1: every 401 and every 403 insufficient_scope at a route says where its
    resource's metadata is; a 401 also says which scopes to ask for (the route's first set)."""

    @pytest.fixture
    async def gw(self, gateway: GatewayFactory, echo: str) -> Any:
        return await gateway(RESOURCES.format(echo=echo))

    @pytest.mark.parametrize(
        ("path", "challenge"),
        [
            pytest.param("/mcp", bare("mcp:use extra", MCP_METADATA), id="first-scope-set"),
            pytest.param("/orders", bare("orders:read"), id="default-resource"),
            pytest.param("/free", bare(), id="no-scopes-no-scope-param"),
        ],
    )
    async def test_no_token(self, gw: Any, path: str, challenge: str) -> None:
        response = await gw.client.get(path)
        assert (response.status_code, response.headers["www-authenticate"]) == (401, challenge)
        # the body stays RFC 6750's: the pointers are in the challenge
        assert response.json() == {
            "error": "unauthorized",
            "error_description": "an access token is required",
        }

    async def test_invalid_token(self, gw: Any) -> None:
        response = await gw.client.get("/mcp", headers={"Authorization": "Bearer x.y.z"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == invalid(
            "malformed token", "mcp:use extra", MCP_METADATA
        )

    async def test_a_token_for_one_resource_is_refused_at_the_other(
        self, gw: Any, mint: Callable[..., str]
    ) -> None:
        """RFC 8707: a token's audience binds it to its resource; the refusal points the
        client at the metadata of the resource it called."""
        for_mcp = {"Authorization": f"Bearer {mint('mcp:use extra orders:read', aud=MCP)}"}
        for_orders = {"Authorization": f"Bearer {mint('mcp:use extra orders:read')}"}
        assert (await gw.client.get("/mcp", headers=for_mcp)).status_code == 200
        assert (await gw.client.get("/orders", headers=for_orders)).status_code == 200
        at_orders = await gw.client.get("/orders", headers=for_mcp)
        assert at_orders.status_code == 401
        assert at_orders.headers["www-authenticate"] == invalid("wrong audience", "orders:read")
        at_mcp = await gw.client.get("/mcp", headers=for_orders)
        assert at_mcp.status_code == 401
        assert at_mcp.headers["www-authenticate"] == invalid(
            "wrong audience", "mcp:use extra", MCP_METADATA
        )

    async def test_insufficient_scope(self, gw: Any, mint: Callable[..., str]) -> None:
        token = mint("mcp:use", aud=MCP)
        response = await gw.client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == insufficient("mcp:use extra", MCP_METADATA)

    @pytest.mark.parametrize(
        "head",
        [
            pytest.param("", id="host"),
            pytest.param("X-Forwarded-Host: evil.example\r\n", id="x-forwarded-host"),
            pytest.param("Forwarded: host=evil.example;proto=http\r\n", id="forwarded"),
            pytest.param("X-Forwarded-Proto: http\r\n", id="x-forwarded-proto"),
        ],
    )
    async def test_the_url_never_comes_from_the_request(self, gw: Any, head: str) -> None:
        response = await raw_request(gw.port, "/mcp", head, host="evil.example:8443")
        assert response.status == 401
        assert response.header("www-authenticate") == [bare("mcp:use extra", MCP_METADATA)]


async def test_challenged_keeps_a_403s_scope_and_names_the_resource(
    write_config: Callable[[str], Config],
) -> None:
    config = write_config(RESOURCES.format(echo="http://127.0.0.1:9"))
    route = RouteTable.from_config(config.routes, Resources.from_config(config)).match(
        None, "/mcp", "GET"
    )
    refused = challenged(route, InsufficientScope("tool:scope"))
    assert (refused.scope, refused.resource_metadata) == ("tool:scope", MCP_METADATA)
    missing = challenged(route, MissingToken())
    assert (missing.scope, missing.resource_metadata) == ("mcp:use extra", MCP_METADATA)


async def test_challenged_without_a_registry_names_no_metadata(
    write_config: Callable[[str], Config],
) -> None:
    """``gateway serve`` checks the table alone; the gateway's own always has the registry."""
    config = write_config(RESOURCES.format(echo="http://127.0.0.1:9"))
    route = RouteTable.from_config(config.routes).match(None, "/mcp", "GET")
    assert route.resource is None
    assert challenged(route, MissingToken()).challenge() == bare("mcp:use extra", None)


# --- audience-bound tokens (RFC 8707): a token for one resource is for no other ---------------

RESOURCE_A = "https://a.example.com/mcp"
RESOURCE_B = "https://b.example.com"


def two_resources(echo: str) -> str:
    """Resource A: /a; resource B: /b1 and /b2; the default audience: /default."""
    return (
        f'[[routes]]\npath = "/a"\naudience = "{RESOURCE_A}"\nupstream = "{echo}"\n'
        f'[[routes]]\npath = "/b1"\naudience = "{RESOURCE_B}"\nupstream = "{echo}"\n'
        f'[[routes]]\npath = "/b2"\naudience = "{RESOURCE_B}"\nupstream = "{echo}"\n'
        f'scopes = ["orders:read"]\n'
        f'[[routes]]\npath = "/default"\nupstream = "{echo}"\n'
    )


@pytest.mark.parametrize(
    ("aud", "accepted"),
    [
        pytest.param(RESOURCE_A, {"/a"}, id="a"),
        pytest.param([RESOURCE_A], {"/a"}, id="a-as-list"),
        pytest.param(RESOURCE_B, {"/b1", "/b2"}, id="b"),
        pytest.param([RESOURCE_A, RESOURCE_B], {"/a", "/b1", "/b2"}, id="a-and-b"),
        pytest.param(AUDIENCE, {"/default"}, id="default"),
        pytest.param(RESOURCE_A + "/", set(), id="a-not-exactly"),
    ],
)
async def test_a_token_is_refused_at_every_route_of_another_resource(
    gateway: GatewayFactory,
    echo: str,
    mint: Callable[..., str],
    aud: str | list[str],
    accepted: set[str],
) -> None:
    gw = await gateway(two_resources(echo))
    bearer = {"Authorization": f"Bearer {mint('orders:read', aud=aud)}"}
    for path in ("/a", "/b1", "/b2", "/default"):
        response = await gw.client.get(path, headers=bearer)
        if path in accepted:
            assert response.status_code == 200, (path, response.text)
            assert response.json()["path"] == path
        else:
            assert response.status_code == 401, (path, response.text)
            challenge = response.headers["www-authenticate"]
            assert 'error="invalid_token"' in challenge
            assert 'error_description="wrong audience"' in challenge
            assert response.json()["error"] == "invalid_token"


def test_a_token_the_issuer_minted_for_one_resource(
    config: Config, storage: Storage, user: User
) -> None:
    """End to end: the issuer's token for resource A (``resource`` at the token endpoint)
    passes the proxy at A's route to a real upstream, and is refused at every route of B and
    at the default audience's; one for no resource, the other way round."""
    with echo_upstream_thread() as upstream:
        routes = tuple(
            RouteConfig(path=path, upstream=upstream, audience=audience, host="api.test")
            for path, audience in (
                ("/a", RESOURCE_A),
                ("/b1", RESOURCE_B),
                ("/b2", RESOURCE_B),
                ("/default", None),
            )
        )
        with storage.session() as session:
            new = accounts.create_client(
                session, "Agent", [], ["password"], "", "client_secret_basic"
            )
        assert new.client_secret is not None
        auth = (new.client.client_id, new.client_secret)
        app = create_app(dataclasses.replace(config, routes=routes))
        with TestClient(app, base_url=config.issuer) as http:

            def minted(*resources: str) -> str:
                form = [
                    ("grant_type", "password"),
                    ("username", user.email),
                    ("password", PASSWORD),
                    *(("resource", r) for r in resources),
                ]
                response = http.post(
                    "/oauth/token",
                    content=urlencode(form),
                    auth=auth,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                assert response.status_code == 200, response.text
                return str(response.json()["access_token"])

            def status(path: str, access_token: str) -> int:
                headers = {"Authorization": f"Bearer {access_token}", "Host": "api.test"}
                response = http.get(path, headers=headers)
                if response.status_code == 401:
                    assert 'error="invalid_token"' in response.headers["www-authenticate"]
                else:
                    assert response.json()["path"] == path  # the upstream answered
                return response.status_code

            for_a, for_default = minted(RESOURCE_A), minted()
            assert [status(p, for_a) for p in ("/a", "/b1", "/b2", "/default")] == [
                200,
                401,
                401,
                401,
            ]
            assert [status(p, for_default) for p in ("/a", "/b1", "/b2", "/default")] == [
                401,
                401,
                401,
                200,
            ]
