"""RFC 9449 at the proxy: a DPoP-bound token with its proof through real routes (uvicorn, an
echo upstream on 127.0.0.1), proofs made with joserfc; every check and refusal shape."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import jwt as pyjwt
import pytest

from gateway.config import DpopConfig
from gateway.dpop import Checker
from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.keys import KeyRing
from tests.support.cases import METADATA, bare, invalid
from tests.support.proofs import ProofKey
from tests.support.proxy import Gateway, GatewayFactory, upstream_header

ALGS = 'algs="ES256 EdDSA PS256 RS256"'
ORDERS = (
    '[[routes]]\nname = "orders"\npath = "/orders"\nupstream = "{echo}"\n'
    'scopes = ["orders:read"]\n{extra}'
)


def dpop_challenge(*params: tuple[str, str | None], bearer_too: bool = True) -> str:
    """``DPoP algs="...", name="value", ...`` and, where bearer tokens are taken too, the bare
    Bearer challenge after it, in one field."""
    pairs = ", ".join(f'{n}="{v}"' for n, v in params if v is not None)
    challenge = f"DPoP {ALGS}" + (", " + pairs if pairs else "")
    return challenge + (", " + bare("orders:read") if bearer_too else "")


def refused(error: str, description: str, bearer_too: bool = True) -> str:
    return dpop_challenge(
        ("error", error),
        ("error_description", description),
        ("scope", "orders:read"),
        ("resource_metadata", METADATA),
        bearer_too=bearer_too,
    )


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


def url(gw: Gateway, path: str = "/orders") -> str:
    return f"{gw.url}{path}"


async def get(gw: Gateway, headers: dict[str, str], path: str = "/orders") -> httpx.Response:
    return await gw.client.get(path, headers=headers)


def failures(gw: Gateway, reason: str) -> float:
    text = gw.proxy.metrics.render().decode()
    for line in text.splitlines():
        if line.startswith("gateway_token_failures_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


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
                {"iat": time.time() - 600},
                "DPoP proof is outside its time window",
                id="stale-iat",
            ),
            pytest.param(
                "GET",
                None,
                {"iat": time.time() + 600},
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
