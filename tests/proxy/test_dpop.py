"""RFC 9449 at the proxy: a DPoP-bound token with its proof through real routes (uvicorn, an
echo upstream on 127.0.0.1), proofs made with joserfc; every check of the proof and the shape
of every refusal. Route settings, upstream headers and nonces: ``test_dpop_routes.py``."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.introspect.revocation import RevocationCache, RevocationEntry
from tests.support.cases import METADATA, invalid
from tests.support.dpop_routes import (
    ALGS,
    ORDERS,
    dpop_challenge,
    failures,
    get,
    refused,
    url,
)
from tests.support.proofs import ProofKey
from tests.support.proxy import Gateway, GatewayFactory, upstream_header


@pytest.fixture
def key() -> ProofKey:
    return ProofKey()


@pytest.fixture
def bound(mint: Callable[..., str], key: ProofKey) -> str:
    """A token bound to ``key`` (``cnf.jkt``), with the orders scope."""
    return mint("orders:read", cnf=key.cnf)


@pytest.fixture
async def orders(gateway: GatewayFactory, echo: str) -> Gateway:
    return await gateway(ORDERS.format(echo=echo, extra=""))


class TestAccepted:
    async def test_a_bound_token_with_its_proof_passes(
        self, orders: Gateway, key: ProofKey, bound: str
    ) -> None:
        response = await get(orders, key.headers(bound, "GET", url(orders)))
        assert response.status_code == 200, response.text
        assert upstream_header(response, "x-forwarded-user") == ["alice"]
        # RFC 9449 §7: the proof is for this gateway; the token is not forwarded either
        assert upstream_header(response, "dpop") == []
        assert upstream_header(response, "authorization") == []
        assert "dpop-nonce" not in response.headers  # nonces are off

    async def test_the_query_is_not_part_of_htu(
        self, orders: Gateway, key: ProofKey, bound: str
    ) -> None:
        response = await get(orders, key.headers(bound, "GET", url(orders)), "/orders?page=2")
        assert response.status_code == 200
        with_query = key.headers(bound, "GET", url(orders) + "?page=2")
        response = await get(orders, with_query, "/orders?page=2")
        assert response.status_code == 401
        assert response.json()["error_description"] == "DPoP proof is for another request"

    async def test_scheme_and_host_compare_case_insensitively(
        self, orders: Gateway, key: ProofKey, bound: str
    ) -> None:
        shouting = f"HTTP://127.0.0.1:{orders.port}/orders"
        response = await get(orders, key.headers(bound, "GET", shouting))
        assert response.status_code == 200

    async def test_the_path_is_the_one_sent(
        self, orders: Gateway, key: ProofKey, bound: str
    ) -> None:
        """The path as sent, compared after RFC 3986 §6.2.2.1 (percent-encoding case) only."""
        upper = url(orders, "/orders/%7Euser")
        response = await get(orders, key.headers(bound, "GET", upper), "/orders/%7euser")
        assert response.status_code == 200, response.text
        other = url(orders, "/orders/user")
        response = await get(orders, key.headers(bound, "GET", other), "/orders/%7euser")
        assert response.status_code == 401

    async def test_the_dpop_scheme_is_case_insensitive(
        self, orders: Gateway, key: ProofKey, bound: str
    ) -> None:
        headers = key.headers(bound, "GET", url(orders))
        headers["Authorization"] = f"dpop {bound}"
        assert (await get(orders, headers)).status_code == 200


class TestRefused:
    async def test_a_replay_is_refused(self, orders: Gateway, key: ProofKey, bound: str) -> None:
        headers = key.headers(bound, "GET", url(orders))
        assert (await get(orders, headers)).status_code == 200
        response = await get(orders, headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused(
            "invalid_dpop_proof", "DPoP proof was used before"
        )
        assert response.json() == {
            "error": "invalid_dpop_proof",
            "error_description": "DPoP proof was used before",
        }
        assert failures(orders, "dpop_was_used_before") == 1

    @pytest.mark.parametrize(
        ("method", "target", "claims", "description"),
        [
            pytest.param("POST", None, {}, "DPoP proof is for another request", id="other-htm"),
            pytest.param(
                "GET",
                "http://other.test/orders",
                {},
                "DPoP proof is for another request",
                id="other-host",
            ),
            pytest.param(
                "GET", "/orders/1", {}, "DPoP proof is for another request", id="other-path"
            ),
            pytest.param(
                "GET", None, {"ath": "x" * 43}, "DPoP proof is for another access token", id="ath"
            ),
            pytest.param(
                "GET", None, {"ath": None}, "DPoP proof is for another access token", id="no-ath"
            ),
            pytest.param(
                "GET",
                None,
                {"iat": -600.0},  # seconds from now, taken when the test runs
                "DPoP proof is outside its time window",
                id="stale-iat",
            ),
            pytest.param(
                "GET",
                None,
                {"iat": 600.0},
                "DPoP proof is outside its time window",
                id="future-iat",
            ),
        ],
    )
    async def test_a_proof_for_something_else(
        self,
        orders: Gateway,
        key: ProofKey,
        bound: str,
        method: str,
        target: str | None,
        claims: dict[str, Any],
        description: str,
    ) -> None:
        where = url(orders) if target is None else target
        if where.startswith("/"):
            where = url(orders, where)
        if "iat" in claims:  # an offset: the collection can be minutes before the run
            claims = {**claims, "iat": time.time() + claims["iat"]}
        proof = key.proof(method, where, bound, **claims)
        response = await get(orders, {"Authorization": f"DPoP {bound}", "DPoP": proof})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused("invalid_dpop_proof", description)

    async def test_a_bad_signature(self, orders: Gateway, key: ProofKey, bound: str) -> None:
        proof = key.proof("GET", url(orders), bound)
        head, body, _ = proof.split(".")
        forged = ProofKey().proof("GET", url(orders), bound).split(".")[2]
        response = await get(
            orders, {"Authorization": f"DPoP {bound}", "DPoP": f"{head}.{body}.{forged}"}
        )
        assert response.status_code == 401
        assert response.json()["error_description"] == "DPoP proof has a bad signature"

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"\xff\xfe{}", id="not-utf-8"),
            pytest.param(b"[1]", id="not-an-object"),
            pytest.param(b'{"jti": 1}', id="bad-claims"),
        ],
    )
    async def test_a_malformed_proof(
        self, orders: Gateway, key: ProofKey, bound: str, body: bytes
    ) -> None:
        head, _, sig = key.proof("GET", url(orders), bound).split(".")
        segment = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        proof = f"{head}.{segment}.{sig}"
        response = await get(orders, {"Authorization": f"DPoP {bound}", "DPoP": proof})
        assert response.status_code == 401
        assert response.json()["error_description"] == "DPoP proof is malformed"

    async def test_a_proof_by_another_key(self, orders: Gateway, key: ProofKey, bound: str) -> None:
        """RFC 9449 §7.1: the key must be the one the token is bound to."""
        response = await get(orders, ProofKey().headers(bound, "GET", url(orders)))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused(
            "invalid_token", "invalid DPoP key binding"
        )

    async def test_no_proof(self, orders: Gateway, bound: str) -> None:
        response = await get(orders, {"Authorization": f"DPoP {bound}"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused(
            "invalid_dpop_proof", "DPoP proof is missing"
        )
        assert failures(orders, "dpop_is_missing") == 1

    async def test_a_bound_token_presented_as_bearer(self, orders: Gateway, bound: str) -> None:
        """RFC 9449 §7.2: a thief with the token alone gets nothing."""
        response = await get(orders, {"Authorization": f"Bearer {bound}"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused(
            "invalid_token", "a DPoP-bound token needs the DPoP scheme and a proof"
        )

    async def test_a_bearer_token_presented_as_dpop(
        self, orders: Gateway, key: ProofKey, mint: Callable[..., str]
    ) -> None:
        token = mint("orders:read")
        response = await get(orders, key.headers(token, "GET", url(orders)))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused(
            "invalid_token", "the token is not DPoP-bound"
        )

    async def test_a_bad_token_in_the_dpop_scheme(
        self, orders: Gateway, key: ProofKey, mint: Callable[..., str]
    ) -> None:
        token = mint("orders:read", cnf=key.cnf, exp=int(time.time()) - 60)
        response = await get(orders, key.headers(token, "GET", url(orders)))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused("invalid_token", "token expired")

    async def test_a_revoked_bound_token(
        self, orders: Gateway, key: ProofKey, mint: Callable[..., str], revocations: RevocationCache
    ) -> None:
        token = mint("orders:read", cnf=key.cnf, jti="bound-1")
        assert (await get(orders, key.headers(token, "GET", url(orders)))).status_code == 200
        revocations.add(RevocationEntry("jti", "bound-1", time.time(), time.time() + 600))
        response = await get(orders, key.headers(token, "GET", url(orders)))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == refused("invalid_token", "token revoked")

    async def test_insufficient_scope_in_the_dpop_scheme(
        self, orders: Gateway, key: ProofKey, mint: Callable[..., str]
    ) -> None:
        token = mint("other", cnf=key.cnf)
        response = await get(orders, key.headers(token, "GET", url(orders)))
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == dpop_challenge(
            ("error", "insufficient_scope"),
            ("scope", "orders:read"),
            ("resource_metadata", METADATA),
            bearer_too=False,
        )

    @pytest.mark.parametrize("twice", ["dpop", "authorization"])
    async def test_two_proofs_or_two_authorizations(
        self, orders: Gateway, key: ProofKey, bound: str, twice: str
    ) -> None:
        """RFC 9449 §4.3 item 1, RFC 6750 §3.1: 400 ``invalid_request``."""
        one = key.proof("GET", url(orders), bound)
        other = key.proof("GET", url(orders), bound)
        headers = [("Authorization", f"DPoP {bound}"), ("DPoP", one)]
        headers.append(("DPoP", other) if twice == "dpop" else ("Authorization", f"DPoP {bound}"))
        response = await orders.client.get("/orders", headers=headers)
        assert response.status_code == 400
        assert response.headers["www-authenticate"] == dpop_challenge(
            ("error", "invalid_request"),
            ("error_description", response.json()["error_description"]),
            ("resource_metadata", METADATA),
            bearer_too=False,
        )

    async def test_two_bearer_authorizations(
        self, orders: Gateway, mint: Callable[..., str]
    ) -> None:
        token = f"Bearer {mint('orders:read')}"
        headers = [("Authorization", token), ("Authorization", token)]
        response = await orders.client.get("/orders", headers=headers)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert response.headers["www-authenticate"].startswith('Bearer realm="gateway", error=')


async def test_bearer_refusals_keep_their_one_challenge(
    orders: Gateway, mint: Callable[..., str]
) -> None:
    """At a ``dpop = "allowed"`` route a bearer request is answered as before DPoP."""
    response = await get(orders, {"Authorization": f"Bearer {mint('x', aud='other')}"})
    assert response.headers["www-authenticate"] == invalid("wrong audience", "orders:read")


async def test_a_tools_scope_refusal_in_the_dpop_scheme(
    gateway: GatewayFactory, echo: str, key: ProofKey, mint: Callable[..., str]
) -> None:
    """An ``mcp = true`` route's tool scopes refuse a DPoP-bound token in its own scheme."""
    gw = await gateway(
        f'[[routes]]\npath = "/mcp"\nupstream = "{echo}"\nscopes = ["mcp:use"]\nmcp = true\n'
        'mcp_tool_scopes = { "delete_*" = ["files:admin"], "*" = [] }\n'
    )
    token = mint("mcp:use", cnf=key.cnf)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "delete_x"}}
    headers = {**key.headers(token, "POST", url(gw, "/mcp")), "Content-Type": "application/json"}
    response = await gw.client.post("/mcp", json=call, headers=headers)
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'DPoP {ALGS}, error="insufficient_scope", scope="mcp:use')
    assert failures(gw, "tool_scope") == 1
