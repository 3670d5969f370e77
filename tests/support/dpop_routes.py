"""The DPoP route tests' helpers: the challenges a ``DPoP``-scheme refusal carries at the
tests' orders route, requests with a proof, and the refusal counters."""

from __future__ import annotations

import httpx

from tests.support.cases import METADATA, bare
from tests.support.proxy import Gateway

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
