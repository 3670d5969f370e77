"""RFC 6750 at the proxy: where the token is read, the exact challenges, the scope matrix."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.keys import KeyRing
from tests.support.cases import BARE, INVALID_TOKENS, SCOPE_MATRIX, invalid
from tests.support.proxy import AUDIENCE, GatewayFactory, upstream_header


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

    async def test_no_token_is_a_bare_challenge(self, orders: Any) -> None:
        response = await orders.client.get("/orders")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == BARE
        assert response.json()["error"] == "unauthorized"

    async def test_other_schemes_are_no_token(self, orders: Any) -> None:
        response = await orders.client.get("/orders", headers={"Authorization": "Basic YTpi"})
        assert (response.status_code, response.headers["www-authenticate"]) == (401, BARE)

    async def test_query_token_ignored(self, orders: Any, mint: Callable[..., str]) -> None:
        response = await orders.client.get("/orders", params={"access_token": mint("orders:read")})
        assert (response.status_code, response.headers["www-authenticate"]) == (401, BARE)

    async def test_form_token_ignored(self, orders: Any, mint: Callable[..., str]) -> None:
        response = await orders.client.post("/orders", data={"access_token": mint("orders:read")})
        assert (response.status_code, response.headers["www-authenticate"]) == (401, BARE)


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
    assert response.headers["www-authenticate"] == invalid(description)
    assert response.json() == {"error": "invalid_token", "error_description": description}


async def test_revocation_applies_to_the_next_request(
    orders: Any, mint: Callable[..., str], revocations: RevocationCache
) -> None:
    token = mint("orders:read", jti="jti-1")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await orders.client.get("/orders", headers=headers)).status_code == 200
    revocations.add(RevocationEntry("jti", "jti-1", time.time(), time.time() + 600))
    response = await orders.client.get("/orders", headers=headers)
    assert response.headers["www-authenticate"] == invalid("token revoked")


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
        assert response.headers["www-authenticate"] == (
            'Bearer realm="gateway", error="insufficient_scope", scope="a b"'
        )
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
    assert default.headers["www-authenticate"] == invalid("wrong audience")
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
