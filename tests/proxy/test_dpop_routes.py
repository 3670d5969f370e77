"""RFC 9449 at the proxy, the route's side: ``dpop = "required"``, what reaches the upstream
(the ``DPoP`` header, the assertion's ``cnf``), nonces across instances, the URL the client
used behind a trusted proxy, and the method a proof signs."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import jwt as pyjwt
import pytest

from gateway.config import DpopConfig
from gateway.dpop import Checker
from gateway.keys import KeyRing
from tests.support.cases import METADATA
from tests.support.dpop_routes import (
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


class TestRequiredRoute:
    @pytest.fixture
    async def required(self, gateway: GatewayFactory, echo: str) -> Gateway:
        return await gateway(ORDERS.format(echo=echo, extra='dpop = "required"\n'))

    async def test_a_bound_token_with_its_proof(
        self, required: Gateway, key: ProofKey, bound: str
    ) -> None:
        response = await get(required, key.headers(bound, "GET", url(required)))
        assert response.status_code == 200

    async def test_bearer_tokens_are_refused(
        self, required: Gateway, mint: Callable[..., str]
    ) -> None:
        response = await get(required, {"Authorization": f"Bearer {mint('orders:read')}"})
        assert response.status_code == 401
        # RFC 6750 §3.1: another scheme than the resource's: no error code in the challenge
        assert response.headers["www-authenticate"] == dpop_challenge(
            ("scope", "orders:read"), ("resource_metadata", METADATA), bearer_too=False
        )
        assert response.json()["error"] == "unauthorized"
        assert failures(required, "dpop_required") == 1

    async def test_no_token(self, required: Gateway) -> None:
        response = await get(required, {})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == dpop_challenge(
            ("scope", "orders:read"), ("resource_metadata", METADATA), bearer_too=False
        )

    async def test_a_bad_proof_has_no_bearer_challenge(
        self, required: Gateway, key: ProofKey, bound: str
    ) -> None:
        response = await get(required, key.headers(bound, "POST", url(required)))
        assert response.headers["www-authenticate"] == refused(
            "invalid_dpop_proof", "DPoP proof is for another request", bearer_too=False
        )


class TestUpstream:
    async def test_forward_token_keeps_the_proof(
        self, gateway: GatewayFactory, echo: str, key: ProofKey, bound: str
    ) -> None:
        gw = await gateway(ORDERS.format(echo=echo, extra="forward_token = true\n"))
        headers = key.headers(bound, "GET", url(gw))
        response = await get(gw, headers)
        assert upstream_header(response, "dpop") == [headers["DPoP"]]
        assert upstream_header(response, "authorization") == [f"DPoP {bound}"]

    async def test_the_assertion_carries_cnf(
        self, gateway: GatewayFactory, echo: str, key: ProofKey, bound: str, keyring: KeyRing
    ) -> None:
        gw = await gateway(
            "[proxy.assertion]\nenabled = true\n" + ORDERS.format(echo=echo, extra="")
        )
        response = await get(gw, key.headers(bound, "GET", url(gw)))
        [assertion] = upstream_header(response, "x-gateway-assertion")
        claims = pyjwt.decode(assertion, options={"verify_signature": False})
        assert claims["cnf"] == {"jkt": key.jkt}

    async def test_an_unbound_tokens_assertion_has_no_cnf(
        self, gateway: GatewayFactory, echo: str, mint: Callable[..., str]
    ) -> None:
        gw = await gateway(
            "[proxy.assertion]\nenabled = true\n" + ORDERS.format(echo=echo, extra="")
        )
        response = await get(gw, {"Authorization": f"Bearer {mint('orders:read')}"})
        [assertion] = upstream_header(response, "x-gateway-assertion")
        assert "cnf" not in pyjwt.decode(assertion, options={"verify_signature": False})


class TestNonces:
    """RFC 9449 §8: stateless nonces, the same on every instance that shares the secret."""

    NONCES = "[dpop]\nnonces = true\n"

    async def test_nonce_flow_across_two_instances(
        self, gateway: GatewayFactory, echo: str, key: ProofKey, bound: str
    ) -> None:
        toml = self.NONCES + ORDERS.format(echo=echo, extra="")
        shared = b"s" * 32
        one = await gateway(toml, dpop=_checker(shared))
        two = await gateway(toml, dpop=_checker(shared))
        first = await get(one, key.headers(bound, "GET", url(one)))
        assert first.status_code == 401
        assert first.json()["error"] == "use_dpop_nonce"
        nonce = first.headers["dpop-nonce"]
        assert first.headers["www-authenticate"] == refused(
            "use_dpop_nonce", "DPoP proof needs a current server nonce"
        )
        # the nonce one handed out is good at two (no shared state but the secret)
        second = await get(two, key.headers(bound, "GET", url(two), nonce=nonce))
        assert second.status_code == 200, second.text
        assert second.headers["dpop-nonce"]  # the next one, on a successful answer
        wrong = await get(two, key.headers(bound, "GET", url(two), nonce="made-up"))
        assert wrong.json()["error"] == "use_dpop_nonce"

    async def test_another_secrets_nonce_is_refused(
        self, gateway: GatewayFactory, echo: str, key: ProofKey, bound: str
    ) -> None:
        toml = self.NONCES + ORDERS.format(echo=echo, extra="")
        one = await gateway(toml, dpop=_checker(b"a" * 32))
        two = await gateway(toml, dpop=_checker(b"b" * 32))
        nonce = (await get(one, key.headers(bound, "GET", url(one)))).headers["dpop-nonce"]
        response = await get(two, key.headers(bound, "GET", url(two), nonce=nonce))
        assert response.status_code == 401
        assert response.headers["dpop-nonce"] != nonce


def _checker(secret: bytes) -> Checker:
    return Checker(DpopConfig(nonces=True), 0, secret)


class TestForwardedOrigin:
    """The URL the client used: from ``[proxy] trusted_proxies`` only."""

    HTU = "https://api.example.com/orders"
    FORWARDED: ClassVar[dict[str, str]] = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
    }

    async def test_a_trusted_proxy_names_scheme_and_host(
        self, gateway: GatewayFactory, echo: str, key: ProofKey, bound: str
    ) -> None:
        trusted = '[proxy]\ntrusted_proxies = ["127.0.0.1/32"]\n'
        gw = await gateway(trusted + ORDERS.format(echo=echo, extra=""))
        response = await get(gw, {**key.headers(bound, "GET", self.HTU), **self.FORWARDED})
        assert response.status_code == 200, response.text
        # RFC 7239 Forwarded says the same
        forwarded = {"Forwarded": 'for=10.0.0.1;proto=https;host="api.example.com"'}
        response = await get(gw, {**key.headers(bound, "GET", self.HTU), **forwarded})
        assert response.status_code == 200, response.text
        # the request's own URL is not what the client used then
        response = await get(gw, {**key.headers(bound, "GET", url(gw)), **self.FORWARDED})
        assert response.status_code == 401

    async def test_an_untrusted_peer_cannot_name_them(
        self, orders: Gateway, key: ProofKey, bound: str
    ) -> None:
        response = await get(orders, {**key.headers(bound, "GET", self.HTU), **self.FORWARDED})
        assert response.status_code == 401
        assert response.json()["error_description"] == "DPoP proof is for another request"
        response = await get(orders, {**key.headers(bound, "GET", url(orders)), **self.FORWARDED})
        assert response.status_code == 200


class TestMethodOverride:
    """The proof signs the method sent, not the one an override header names."""

    async def test_htm_is_the_method_on_the_wire(
        self, gateway: GatewayFactory, echo: str, key: ProofKey, mint: Callable[..., str]
    ) -> None:
        routes = (
            f'[[routes]]\npath = "/r"\nmethods = ["POST"]\nupstream = "{echo}"\n'
            'scopes = ["a"]\nallow_method_override = true\n'
            f'[[routes]]\npath = "/r"\nmethods = ["DELETE"]\nupstream = "{echo}"\n'
            'scopes = ["a"]\nallow_method_override = true\n'
        )
        gw = await gateway(routes)
        token = mint("a", cnf=key.cnf)
        override = {"X-HTTP-Method-Override": "DELETE"}
        sent = {**key.headers(token, "POST", url(gw, "/r")), **override}
        response = await gw.client.post("/r", headers=sent)
        assert response.status_code == 200, response.text
        named = {**key.headers(token, "DELETE", url(gw, "/r")), **override}
        response = await gw.client.post("/r", headers=named)
        assert response.status_code == 401
