"""DPoP at the token endpoints of two real ``gateway serve`` replicas sharing one database and
one ``keys/`` folder, with ``[dpop] nonces = true``: a nonce handed out by one is taken by the
other; a client created with ``--require-dpop`` gets nothing without a proof at either; a
public client's refresh token bound at one is refused without its key at the other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dpop import ProofKey
from tests.support.live import PASSWORD, LiveGateway, free_port, running_gateway

pytestmark = [pytest.mark.live, pytest.mark.scale]

SCOPE = "orders:read"


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    port_a = free_port()
    shared: dict[str, Any] = {
        "issuer": f"http://127.0.0.1:{port_a}",
        "keys_dir": tmp_path / "keys",
        "extra_toml": "[dpop]\nnonces = true\n",
    }
    with (
        running_gateway(tmp_path / "a", database_url, port=port_a, **shared) as a,
        running_gateway(tmp_path / "b", database_url, **shared) as b,
    ):
        yield a, b


def token_at(
    gateway: LiveGateway,
    token_url: str,
    client: dict[str, Any],
    key: ProofKey | None,
    nonce: str | None,
    **form: str,
) -> httpx.Response:
    """POST to ``gateway``'s token endpoint, with a proof for the issuer's ``token_url`` (one
    deployment: the URL the client knows from discovery, whichever replica answers)."""
    headers = {} if key is None else {"DPoP": key.proof(token_url, nonce=nonce)}
    secret = client.get("client_secret")
    if secret:
        auth: Any = (client["client_id"], secret)
    else:
        auth, form = None, {**form, "client_id": client["client_id"]}
    return httpx.post(
        f"{gateway.base_url}/oauth/token", data=form, headers=headers, auth=auth, timeout=30
    )


def created(gateway: LiveGateway, *extra: str) -> dict[str, Any]:
    args = ["client", "create", "--name", "app", "--scope", SCOPE, "--json"]
    args += ["--grant-type", "password", "--grant-type", "refresh_token", *extra]
    client: dict[str, Any] = json.loads(gateway.cli(*args))
    return client


def test_nonces_and_bindings_hold_across_replicas(
    replicas: tuple[LiveGateway, LiveGateway],
) -> None:
    a, b = replicas
    token_url = a.metadata()["token_endpoint"]
    email = a.create_user("dpop@example.com")
    password = {"grant_type": "password", "username": email, "password": PASSWORD}
    public = created(a, "--public", "--require-dpop")
    key = ProofKey()

    # without a proof: refused at both (--require-dpop)
    for gateway in (a, b):
        refused = token_at(gateway, token_url, public, None, None, **password)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"

    # A's nonce, asked for at A, is taken at B
    asked = token_at(a, token_url, public, key, None, **password)
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    issued = token_at(b, token_url, public, key, asked.headers["DPoP-Nonce"], **password)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["token_type"] == "DPoP"

    # the refresh token B bound to the key: refused at A without it, then taken with it
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    nonce = issued.headers["DPoP-Nonce"]
    other = token_at(a, token_url, public, ProofKey(), nonce, **refresh)
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant", other.text
    again = token_at(a, token_url, public, key, nonce, **refresh)
    assert again.status_code == 200, again.text
    assert again.json()["token_type"] == "DPoP"
