"""Through the real edges (nginx ``auth_request``, Caddy ``forward_auth``), configured by
``gateway edge-config``: what reaches the client, and what reaches the upstream."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt as pyjwt
import pytest

from tests.edge.conftest import EMAIL, SCOPE, Deployment
from tests.proxy.cases import BARE, IDENTITY, TRICKS

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(params=["nginx", "caddy"])
def edge(request: pytest.FixtureRequest) -> str:
    """The base URL of a real edge in front of the gateway."""
    return str(request.getfixturevalue(request.param))


def received(response: httpx.Response) -> dict[str, list[str]]:
    """The headers the upstream received (lower-case names)."""
    assert response.status_code == 200, response.text
    headers: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    return headers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def readme_verifier(gateway: str, audience: str) -> Any:
    """The README's verification example, pointed at this gateway and audience."""
    section = README.read_text().split("## Identity assertion", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code[1].replace("https://gateway.example.com", gateway)
    source = source.replace("http://orders.internal:9001", audience)
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    return namespace["verified_caller"]


def test_allowed_with_identity_headers_and_a_verifiable_assertion(
    edge: str, deployment: Deployment
) -> None:
    response = httpx.get(f"{edge}/orders/1", headers=bearer(deployment.user_token))
    headers = received(response)
    token = pyjwt.decode(deployment.user_token, options={"verify_signature": False})
    assert headers["x-forwarded-user"] == [token["sub"]]
    assert headers["x-forwarded-email"] == [EMAIL]
    assert headers["x-forwarded-client-id"] == [token["client_id"]]
    assert headers["x-forwarded-scopes"] == [f"{SCOPE} profile"]
    verify = readme_verifier(deployment.gateway.issuer, deployment.upstream.url)
    claims = verify(headers["x-gateway-assertion"][0])
    assert (claims["sub"], claims["email"], claims["at_jti"]) == (token["sub"], EMAIL, token["jti"])
    # an access token is not an assertion, even one the gateway signed
    with pytest.raises(pyjwt.InvalidTokenError, match="not an identity assertion"):
        verify(deployment.user_token)


def test_a_client_gets_no_email_header(edge: str, deployment: Deployment) -> None:
    headers = received(httpx.get(f"{edge}/orders/2", headers=bearer(deployment.client_token)))
    assert "x-forwarded-email" not in headers
    assert headers["x-forwarded-scopes"] == [SCOPE]


@pytest.mark.parametrize(
    ("path", "headers", "status", "challenge"),
    [
        pytest.param("/orders/a", {"X-Other": "1"}, 401, BARE, id="no-token"),
        pytest.param(
            "/orders/b",
            bearer("x.y.z"),
            401,
            'Bearer realm="gateway", error="invalid_token", error_description="malformed token"',
            id="invalid-token",
        ),
        pytest.param(
            "/admin/c",
            None,
            403,
            'Bearer realm="gateway", error="insufficient_scope", scope="admin"',
            id="insufficient-scope",
        ),
    ],
)
def test_denials_reach_the_client_with_their_challenge(
    edge: str,
    deployment: Deployment,
    path: str,
    headers: dict[str, str] | None,
    status: int,
    challenge: str,
) -> None:
    response = httpx.get(f"{edge}{path}", headers=headers or bearer(deployment.user_token))
    assert response.status_code == status
    assert response.headers.get_list("www-authenticate") == [challenge]
    assert path not in deployment.upstream.seen


def spellings() -> list[str]:
    return [
        "X-Forwarded-User",
        "x-forwarded-user",
        "X_Forwarded_User",
        "X-Forwarded_User",
        "x_forwarded-client_id",
        "X-FORWARDED-EMAIL",
        "X-Gateway-Assertion",
        "x_gateway_assertion",
        "X-Gateway_Assertion",
    ]


@pytest.mark.parametrize("name", spellings())
@pytest.mark.parametrize("path", ["/orders/3", "/public/3"])
def test_a_spoofed_identity_never_reaches_the_upstream(
    edge: str, deployment: Deployment, name: str, path: str
) -> None:
    response = httpx.get(
        f"{edge}{path}", headers={name: "mallory", **bearer(deployment.user_token)}
    )
    headers = received(response)
    assert not [n for n, values in headers.items() if "mallory" in values]
    if path.startswith("/public"):
        assert not [n for n in headers if n.replace("_", "-") in IDENTITY]
    else:
        assert len(headers["x-forwarded-user"]) == 1


FORGED = {
    "X-Forwarded-Method": "GET",
    "X-Forwarded-Uri": "/public/forged",
    "X-Forwarded-Host": "elsewhere.test",
    "X-Original-Method": "GET",
    "X-Original-URI": "/public/forged",
}


def test_a_forged_description_does_not_change_the_decision(
    edge: str, deployment: Deployment
) -> None:
    """GHSA-7x63-xv5r-3p2x: the client's X-Forwarded-Uri / X-Original-URI are never read."""
    anonymous = httpx.get(f"{edge}/orders/forged", headers=FORGED)
    assert anonymous.status_code == 401
    scoped = httpx.get(f"{edge}/admin/forged", headers={**FORGED, **bearer(deployment.user_token)})
    assert scoped.status_code == 403
    posted = httpx.post(
        f"{edge}/orders/forged", headers={**FORGED, **bearer(deployment.user_token)}
    )
    assert posted.status_code == 403
    assert not [p for p in deployment.upstream.seen if "forged" in p]


def test_the_method_is_the_original_requests(edge: str, deployment: Deployment) -> None:
    """nginx's subrequest is a GET: a GET-only route still refuses the client's POST."""
    seen = len(deployment.upstream.seen)
    response = httpx.post(f"{edge}/orders/posted", headers=bearer(deployment.user_token))
    assert response.status_code == 403
    assert len(deployment.upstream.seen) == seen
    assert received(httpx.get(f"{edge}/orders/posted", headers=bearer(deployment.user_token)))


def raw_get(base: str, target: str) -> int:
    """The status of a request line sent exactly as written (no client normalises it)."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port or 80), timeout=5) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode(
                "latin-1"
            )
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("trick", [p.values[0] for p in TRICKS[:-1]])
def test_path_tricks_are_refused(edge: str, deployment: Deployment, trick: str) -> None:
    target = trick.replace("/orders", "/public")
    status = raw_get(edge, target)
    # refused by the edge itself (400) or by the gateway's decision (403); never passed on
    assert status in (400, 403), status
    assert not [p for p in deployment.upstream.seen if p == target]


def test_a_revoked_token_is_refused_at_once(edge: str, deployment: Deployment) -> None:
    token = deployment.new_client_token()
    assert received(httpx.get(f"{edge}/orders/4", headers=bearer(token)))
    revoked = httpx.post(
        f"{deployment.gateway.base_url}/oauth/revoke",
        data={"token": token},
        auth=deployment.client_auth,
    )
    assert revoked.status_code == 200
    response = httpx.get(f"{edge}/orders/5", headers=bearer(token))
    assert response.status_code == 401
    assert 'error_description="token revoked"' in response.headers["www-authenticate"]
    assert "/orders/5" not in deployment.upstream.seen
