"""The signed identity assertion: its JWS header and claims, its cache, revocation, and that
it is never taken for an access token (nor an access token for it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt as pyjwt
import pytest

from gateway.config import AssertionConfig, Config
from gateway.errors import ConfigError, InvalidToken
from gateway.introspect.revocation import RevocationCache, RevocationEntry
from gateway.introspect.validator import BearerValidator
from gateway.keys import KeyRing, create_key, retire_key
from gateway.proxy.assertion import AssertionSigner
from tests.support.cases import invalid
from tests.support.proxy import ISSUER, GatewayFactory, claims, raw_request, upstream_header

ASSERTION = "[proxy.assertion]\nenabled = true\n"


def route(echo: str, extra: str = "", path: str = "/orders") -> str:
    return f'[[routes]]\npath = "{path}"\nupstream = "{echo}/v1"\nscopes = ["orders:read"]\n{extra}'


def verify(keyring: KeyRing, assertion: str, audience: str) -> dict[str, Any]:
    """As an upstream would: against the JWKS, for its own audience, typed."""
    header = pyjwt.get_unverified_header(assertion)
    assert header["typ"] == "assertion+jwt"
    jwk = next(k for k in keyring.jwks()["keys"] if k["kid"] == header["kid"])
    claims: dict[str, Any] = pyjwt.decode(
        assertion,
        pyjwt.PyJWK(jwk),
        algorithms=[jwk["alg"]],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "jti", "sub"]},
    )
    return claims


async def assertion_for(gw: Any, token: str, path: str = "/orders") -> str | None:
    response = await gw.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    found = upstream_header(response, "x-gateway-assertion")
    return found[0] if found else None


async def test_claims_header_and_signature(
    gateway: GatewayFactory, echo: str, keyring: KeyRing, mint: Callable[..., str]
) -> None:
    gw = await gateway(ASSERTION + route(echo))
    token = mint("orders:write orders:read", email="alice@example.test", jti="at-1")
    assertion = await assertion_for(gw, token)
    assert assertion is not None
    header = pyjwt.get_unverified_header(assertion)
    assert header == {"alg": "RS256", "kid": keyring.active_key.kid, "typ": "assertion+jwt"}
    # the default audience: the upstream's origin, without its base path
    origin = f"http://{urlsplit(echo).netloc}"
    claims = verify(keyring, assertion, origin)
    assert set(claims) == {
        "iss", "aud", "sub", "email", "client_id", "scope", "iat", "exp", "jti", "at_jti"
    }  # fmt: skip
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISSUER, origin, "alice")
    assert (claims["email"], claims["client_id"]) == ("alice@example.test", "app-1")
    assert claims["scope"] == "orders:write orders:read"  # as in the access token
    assert claims["at_jti"] == "at-1" != claims["jti"]
    assert claims["iat"] <= time.time() < claims["exp"] <= claims["iat"] + 60


async def test_a_client_gets_no_email_and_exp_never_outlives_the_token(
    gateway: GatewayFactory, echo: str, keyring: KeyRing, mint: Callable[..., str]
) -> None:
    gw = await gateway(ASSERTION + route(echo, 'assertion_audience = "urn:orders"\n'))
    expires = int(time.time()) + 20
    assertion = await assertion_for(gw, mint("orders:read", exp=expires))
    assert assertion is not None
    claims = verify(keyring, assertion, "urn:orders")
    assert "email" not in claims
    assert claims["exp"] == expires


async def test_cached_per_token_and_audience(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str]
) -> None:
    gw = await gateway(
        ASSERTION + route(echo) + route(echo, 'assertion_audience = "urn:b"\n', "/b")
    )
    token = mint("orders:read")
    first = await assertion_for(gw, token)
    # the same token and route: the same assertion, no new signature (a new one has a new jti)
    assert await assertion_for(gw, token) == first
    assert await assertion_for(gw, token, "/b") not in (None, first)
    assert await assertion_for(gw, mint("orders:read")) not in (None, first)


async def test_a_token_about_to_expire_is_signed_afresh(
    gateway: GatewayFactory, echo: str, keyring: KeyRing, mint: Callable[..., str]
) -> None:
    gw = await gateway(ASSERTION + route(echo))
    expires = int(time.time()) + 3  # inside the refresh margin: never served from the cache
    token = mint("orders:read", exp=expires)
    first, second = await assertion_for(gw, token), await assertion_for(gw, token)
    assert first is not None and second is not None and first != second
    origin = f"http://{urlsplit(echo).netloc}"
    assert verify(keyring, second, origin)["exp"] == expires


async def test_a_revoked_tokens_cached_assertion_is_never_served(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], revocations: RevocationCache
) -> None:
    gw = await gateway(ASSERTION + route(echo))
    token = mint("orders:read", jti="to-revoke")
    assert await assertion_for(gw, token) is not None
    revocations.add(RevocationEntry("jti", "to-revoke", time.time(), time.time() + 600))
    auth = f"Authorization: Bearer {token}\r\n"
    proxied = await raw_request(gw.port, "/orders", auth)
    decided = await raw_request(gw.port, "/decisions/orders", auth)
    for response in (proxied, decided):
        assert response.status == 401
        assert response.header("www-authenticate") == [invalid("token revoked", "orders:read")]
        assert response.header("x-gateway-assertion") == []


def test_a_retired_keys_assertions_are_not_served(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    old = create_key(keys, "ES256")
    keyring = KeyRing(keys)
    signer = AssertionSigner(keyring, ISSUER, AssertionConfig(enabled=True))
    validator = BearerValidator(keyring, RevocationCache(), ISSUER)
    access = validator.validate(keyring.sign(claims()), None)
    first = signer.assertion(access, "urn:a")
    assert signer.assertion(access, "urn:a") == first
    create_key(keys, "ES256")
    retire_key(keys, old.kid)
    keyring.reload_if_changed()
    fresh = signer.assertion(access, "urn:a")
    assert fresh != first
    assert pyjwt.get_unverified_header(fresh.decode())["kid"] == keyring.active_key.kid


async def test_the_validator_refuses_an_assertion(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], validator: BearerValidator
) -> None:
    gw = await gateway(ASSERTION + route(echo))
    assertion = await assertion_for(gw, mint("orders:read"))
    assert assertion is not None
    with pytest.raises(InvalidToken, match="not an access token"):
        validator.validate(assertion, None)
    presented = await gw.client.get("/orders", headers={"Authorization": f"Bearer {assertion}"})
    assert presented.status_code == 401
    assert presented.headers["www-authenticate"] == invalid("not an access token", "orders:read")


def test_an_access_token_is_not_an_assertion(mint: Callable[..., str]) -> None:
    assert pyjwt.get_unverified_header(mint("orders:read"))["typ"] == "at+jwt"


async def test_public_routes_get_none(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str]
) -> None:
    gw = await gateway(ASSERTION + f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n')
    assert await assertion_for(gw, mint("orders:read"), "/x") is None


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize(
    ("configured", "sent"),
    [
        pytest.param(None, "X-Gateway-Assertion", id="default"),
        pytest.param(None, "x_gateway_assertion", id="underscores"),
        pytest.param(None, "X-GATEWAY_assertion", id="mixed"),
        pytest.param("X-Identity-Jwt", "x_identity-JWT", id="renamed"),
    ],
)
async def test_a_client_sent_assertion_never_reaches_the_upstream(
    gateway: GatewayFactory,
    echo: str,
    mint: Callable[..., str],
    enabled: bool,
    configured: str | None,
    sent: str,
) -> None:
    table = f"[proxy.assertion]\nenabled = {json.dumps(enabled)}\n"
    if configured:
        table += f'header = "{configured}"\n'
    gw = await gateway(
        table + route(echo) + f'[[routes]]\npath = "/p"\npublic = true\nupstream = "{echo}"\n'
    )
    for path in ("/orders", "/p"):
        response = await gw.client.get(
            path, headers={sent: "forged", "Authorization": f"Bearer {mint('orders:read')}"}
        )
        received = json.loads(response.text)["headers"]
        assert not [v for _, v in received if v == "forged"], path


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param(
            '[proxy.assertion]\nheader = "x_forwarded_user"\n',
            "proxy.assertion.header: 'x_forwarded_user' is used twice",
            id="header-is-an-identity-header",
        ),
        pytest.param(
            '[proxy.assertion]\nheader = "X Assertion"\n',
            "proxy.assertion.header: 'X Assertion' is not a valid header name",
            id="header-name",
        ),
        pytest.param(
            "[proxy.assertion]\nttl = 0\n", "proxy.assertion.ttl: must be positive", id="ttl"
        ),
        pytest.param(
            "[proxy.assertion]\nenabled = 1\n",
            "proxy.assertion.enabled: must be true",
            id="enabled",
        ),
        pytest.param(
            '[decisions]\ntrusted_peers = ["edge.internal"]\n',
            "decisions.trusted_peers: 'edge.internal' is not an IP address or network",
            id="trusted-peers",
        ),
        pytest.param(
            '[[routes]]\npath = "/r"\nupstream = "http://u.test"\nassertion_audience = " "\n',
            r"routes[0].assertion_audience: must not be empty",
            id="assertion-audience",
        ),
    ],
)
def test_config_errors_name_the_key(
    write_config: Callable[[str], Config], toml: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        write_config(toml)
    assert message in str(raised.value)
