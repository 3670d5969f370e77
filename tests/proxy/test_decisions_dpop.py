"""RFC 9449 at ``/decisions``: the proof checked against the request the edge describes (its
method, ``X-Forwarded-Proto``, host and original URI), in each edge's dialect."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from gateway.config import DpopConfig
from gateway.dpop import Checker
from tests.support.proofs import ProofKey
from tests.support.proxy import Gateway, GatewayFactory, RawResponse, raw_request

ORDERS = '[[routes]]\npath = "/orders"\nupstream = "{echo}"\nscopes = ["orders:read"]\n'
#: the URL the client used, in front of the edge
HTU = "https://api.test/orders"


def nginx(extra: str) -> tuple[str, str]:
    """``auth_request`` as ``gateway edge-config nginx`` sets it up."""
    head = (
        "X-Original-Method: GET\r\nX-Original-URI: /orders?page=2\r\nX-Forwarded-Proto: https\r\n"
    )
    return "/decisions", head + extra


def forward_auth(extra: str) -> tuple[str, str]:
    """Caddy's ``forward_auth`` and Traefik's ``ForwardAuth``."""
    head = (
        "X-Forwarded-Method: GET\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: api.test\r\n"
        "X-Forwarded-Uri: /orders?page=2\r\n"
    )
    return "/decisions", head + extra


def envoy(extra: str) -> tuple[str, str]:
    """``ext_authz`` with ``path_prefix``: the request's own method and path, its ``Host``."""
    return "/decisions/orders?page=2", "X-Forwarded-Proto: https\r\n" + extra


DIALECTS = [pytest.param(d, id=d.__name__) for d in (nginx, forward_auth, envoy)]


@pytest.fixture
def key() -> ProofKey:
    return ProofKey()


@pytest.fixture
def bound(mint: Callable[..., str], key: ProofKey) -> str:
    return mint("orders:read", cnf=key.cnf)


@pytest.fixture
async def gw(gateway: GatewayFactory, echo: str) -> Gateway:
    return await gateway(ORDERS.format(echo=echo))


def dpop(token: str, proof: str) -> str:
    return f"Authorization: DPoP {token}\r\nDPoP: {proof}\r\n"


async def ask(gw: Gateway, dialect: Callable[[str], tuple[str, str]], extra: str) -> RawResponse:
    target, head = dialect(extra)
    return await raw_request(gw.port, target, head, host="api.test")


def error(response: RawResponse) -> tuple[int, str]:
    return response.status, json.loads(response.body)["error_description"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_accepted_once_and_its_replay_refused(
    gw: Gateway, key: ProofKey, bound: str, dialect: Callable[[str], tuple[str, str]]
) -> None:
    proof = key.proof("GET", HTU, bound)
    allowed = await ask(gw, dialect, dpop(bound, proof))
    assert allowed.status == 200, allowed.body
    assert allowed.header("x-forwarded-user") == ["alice"]
    assert allowed.header("dpop-nonce") == []  # nonces are off
    replayed = await ask(gw, dialect, dpop(bound, proof))
    assert error(replayed) == (401, "DPoP proof was used before")
    [challenge] = replayed.header("www-authenticate")
    assert challenge.startswith('DPoP algs="ES256 EdDSA PS256 RS256", error="invalid_dpop_proof"')
    assert ', Bearer realm="gateway"' in challenge


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_proof_is_for_the_described_request(
    gw: Gateway, key: ProofKey, bound: str, dialect: Callable[[str], tuple[str, str]]
) -> None:
    for method, url in (("POST", HTU), ("GET", "http://api.test/orders"), ("GET", HTU + "/1")):
        response = await ask(gw, dialect, dpop(bound, key.proof(method, url, bound)))
        assert error(response) == (401, "DPoP proof is for another request"), (method, url)


async def test_without_a_proto_the_scheme_is_the_edges_own(
    gw: Gateway, key: ProofKey, bound: str
) -> None:
    head = "X-Original-Method: GET\r\nX-Original-URI: /orders\r\n"
    head += dpop(bound, key.proof("GET", "http://api.test/orders", bound))
    response = await raw_request(gw.port, "/decisions", head, host="api.test")
    assert response.status == 200, response.body


async def test_a_repeated_proto_is_ambiguous(gw: Gateway, key: ProofKey, bound: str) -> None:
    extra = "X-Forwarded-Proto: http\r\n" + dpop(bound, key.proof("GET", HTU, bound))
    response = await ask(gw, nginx, extra)
    assert error(response) == (403, "more than one x-forwarded-proto header")


async def test_a_bound_token_as_bearer_and_two_proofs(
    gw: Gateway, key: ProofKey, bound: str
) -> None:
    response = await ask(gw, nginx, f"Authorization: Bearer {bound}\r\n")
    assert error(response) == (401, "a DPoP-bound token needs the DPoP scheme and a proof")
    two = dpop(bound, key.proof("GET", HTU, bound)) + f"DPoP: {key.proof('GET', HTU, bound)}\r\n"
    response = await ask(gw, nginx, two)
    # a 400 at the proxy; /decisions answers 403 to everything but a 401 (nginx's rule)
    assert response.status == 403
    assert json.loads(response.body)["error"] == "invalid_request"


async def test_nonces(gateway: GatewayFactory, echo: str, key: ProofKey, bound: str) -> None:
    checker = Checker(DpopConfig(nonces=True), 0, b"k" * 32)
    gw = await gateway("[dpop]\nnonces = true\n" + ORDERS.format(echo=echo), dpop=checker)
    first = await ask(gw, nginx, dpop(bound, key.proof("GET", HTU, bound)))
    assert first.status == 401
    assert json.loads(first.body)["error"] == "use_dpop_nonce"
    [nonce] = first.header("dpop-nonce")
    second = await ask(gw, nginx, dpop(bound, key.proof("GET", HTU, bound, nonce=nonce)))
    assert second.status == 200, second.body
    assert second.header("dpop-nonce") != []  # the next one, for edges that pass it on


@pytest.mark.parametrize(
    ("host", "port", "htu"),
    [
        pytest.param("api.test", "8443", "https://api.test:8443/orders", id="added"),
        pytest.param("api.test", "443", "https://api.test/orders", id="default"),
        pytest.param("api.test:9000", "8443", "https://api.test:9000/orders", id="host-has-one"),
    ],
)
async def test_nginx_passes_the_port_apart(
    gw: Gateway, key: ProofKey, bound: str, host: str, port: str, htu: str
) -> None:
    """nginx's ``$host`` has no port: ``X-Forwarded-Port`` completes the URL."""
    _, head = nginx(f"X-Forwarded-Port: {port}\r\n")
    head += dpop(bound, key.proof("GET", htu, bound))
    response = await raw_request(gw.port, "/decisions", head, host=host)
    assert response.status == 200, response.body
