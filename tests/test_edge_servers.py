"""Through the real edges (nginx ``auth_request``, Caddy ``forward_auth``), configured by
``gateway edge-config``: what reaches the client, and what reaches the upstream."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt as pyjwt
import pytest

from tests.support.cases import IDENTITY, TRICKS, bare, insufficient, invalid
from tests.support.edges import ADMIN_HOST, EMAIL, SCOPE, USER_SCOPES, Deployment

pytestmark = [pytest.mark.edge, pytest.mark.live]

EDGES_DOC = Path(__file__).resolve().parents[1] / "docs" / "edges.md"


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


def documented_verifier(gateway: str, audience: str) -> Any:
    """docs/edges.md's verification example, pointed at this gateway and audience."""
    section = EDGES_DOC.read_text().split("## Identity assertion", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code[1].replace("https://gateway.example.com", gateway)
    source = source.replace("http://orders.internal:9001", audience)
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/edges.md", "exec"), namespace)
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
    assert headers["x-forwarded-scopes"] == [USER_SCOPES]
    verify = documented_verifier(deployment.gateway.issuer, deployment.upstream.url)
    claims = verify(headers["x-gateway-assertion"][0])
    assert (claims["sub"], claims["email"], claims["at_jti"]) == (token["sub"], EMAIL, token["jti"])
    # an access token is not an assertion, even one the gateway signed
    with pytest.raises(pyjwt.InvalidTokenError, match="not an identity assertion"):
        verify(deployment.user_token)


def test_a_client_gets_no_email_header(edge: str, deployment: Deployment) -> None:
    headers = received(httpx.get(f"{edge}/orders/2", headers=bearer(deployment.client_token)))
    assert "x-forwarded-email" not in headers
    assert headers["x-forwarded-scopes"] == [SCOPE]


def metadata_url(deployment: Deployment) -> str:
    """The resource's metadata URL: the deployment's routes name no audience, so the
    identifier is the issuer."""
    return f"{deployment.gateway.issuer}/.well-known/oauth-protected-resource"


@pytest.mark.parametrize(
    ("path", "headers", "status", "challenge"),
    [
        pytest.param("/orders/a", {"X-Other": "1"}, 401, lambda m: bare(SCOPE, m), id="no-token"),
        pytest.param(
            "/orders/b",
            bearer("x.y.z"),
            401,
            lambda m: invalid("malformed token", SCOPE, m),
            id="invalid-token",
        ),
        pytest.param(
            "/admin/c", None, 403, lambda m: insufficient("admin", m), id="insufficient-scope"
        ),
    ],
)
def test_denials_reach_the_client_with_their_challenge(
    edge: str,
    deployment: Deployment,
    path: str,
    headers: dict[str, str] | None,
    status: int,
    challenge: Callable[[str], str],
) -> None:
    response = httpx.get(f"{edge}{path}", headers=headers or bearer(deployment.user_token))
    assert response.status_code == status
    # the resource_metadata of RFC 9728 §5.1 too: an MCP client starts from it
    assert response.headers.get_list("www-authenticate") == [challenge(metadata_url(deployment))]
    assert path not in deployment.upstream.seen


def test_the_resource_metadata_is_the_gateways(edge: str, deployment: Deployment) -> None:
    """RFC 9728: a client refused at the edge finds the metadata its challenge names there
    (the edge passes the well-known paths to the gateway, undecided, with the client's host)."""
    refused = httpx.get(f"{edge}/orders/meta")
    found = re.search(r'resource_metadata="([^"]+)"', refused.headers["www-authenticate"])
    assert found is not None
    path = urlsplit(found[1]).path
    response = httpx.get(f"{edge}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "max-age=300"
    assert response.json()["resource"] == deployment.gateway.issuer
    assert response.json()["authorization_servers"] == [deployment.gateway.issuer]
    head = httpx.head(f"{edge}{path}")
    assert head.status_code == 200 and head.content == b""
    missing = httpx.get(f"{edge}{path}/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert not [p for p in deployment.upstream.seen if p.startswith("/.well-known")]


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


def raw_get(base: str, target: str, host: str | None = None) -> int:
    """The status of a request sent exactly as written (no client normalises its request line
    or its ``Host``, default: the edge's address)."""
    host = urlsplit(base).netloc if host is None else host
    return raw_status(base, f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")


def raw_status(base: str, request: str) -> int:
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port or 80), timeout=5) as sock:
        sock.sendall(request.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_an_http_1_0_request_without_host_is_refused_not_failed(
    edge: str, deployment: Deployment
) -> None:
    """HTTP/1.0 needs no ``Host`` (RFC 9112 §3.2 asks it of HTTP/1.1 only), but nginx would ask
    the gateway about it with no ``Host`` at all, which the gateway refuses (400), and nginx
    turns a refusal it does not expect into a 500: its configuration refuses the request
    itself (400). Caddy asks, and the gateway's answer stands (the route wants a token)."""
    assert raw_status(edge, "GET /orders/10 HTTP/1.0\r\n\r\n") in (400, 401)
    assert "/orders/10" not in deployment.upstream.seen


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


@pytest.mark.parametrize(
    "host",
    [
        pytest.param(f"{ADMIN_HOST}.", id="trailing-dot"),
        pytest.param(ADMIN_HOST.upper(), id="upper-case"),
        pytest.param(f"{ADMIN_HOST}:{{port}}", id="port"),
        pytest.param(f"{ADMIN_HOST}.:{{port}}", id="trailing-dot-port"),
        pytest.param("Admin.Local.:{port}", id="mixed-case-dot-port"),
    ],
)
def test_every_spelling_of_a_host_needs_that_hosts_token(
    edge: str, deployment: Deployment, host: str
) -> None:
    """Issue 15 §1: ``Host: admin.local.`` behind Caddy reached the host-less public route."""
    target = f"/console/{abs(hash(host))}"
    assert raw_get(edge, target, host.format(port=urlsplit(edge).port)) == 401
    assert target not in deployment.upstream.seen


def test_another_host_gets_the_host_less_route(edge: str, deployment: Deployment) -> None:
    assert raw_get(edge, "/console/www", "www.local.") == 200
    assert "/console/www" in deployment.upstream.seen


@pytest.mark.parametrize(
    ("host", "refusals"),
    [
        # refused by the edge itself (400) or by the gateway's decision (403)
        pytest.param(f"{ADMIN_HOST}..", {400, 403}, id="two-trailing-dots"),
        pytest.param(f"a@{ADMIN_HOST}", {400, 403}, id="userinfo"),
        pytest.param("[admin.local]", {400, 403}, id="bracketed-name"),
        # nginx's $host drops the port, so the gateway sees admin.local and asks its token
        pytest.param(f"{ADMIN_HOST}:99999", {400, 401, 403}, id="bad-port"),
        pytest.param(f"{ADMIN_HOST}:", {400, 401, 403}, id="empty-port"),
    ],
)
def test_a_bad_host_is_refused(
    edge: str, deployment: Deployment, host: str, refusals: set[int]
) -> None:
    target = f"/console/bad-{abs(hash(host))}"
    assert raw_get(edge, target, host) in refusals
    assert target not in deployment.upstream.seen


@pytest.mark.parametrize("name", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_an_override_the_route_does_not_honour_is_refused(
    edge: str, deployment: Deployment, name: str
) -> None:
    """Issue 15 §7: the edge forwards the header whatever the gateway says, so the gateway
    refuses the request (its own proxy would drop the header)."""
    target = f"/public/override-{name}"
    response = httpx.post(f"{edge}{target}", headers={name: "DELETE"})
    assert response.status_code == 403
    assert target not in deployment.upstream.seen


def test_an_override_is_checked_as_the_overriding_method(edge: str, deployment: Deployment) -> None:
    token = bearer(deployment.user_token)
    posted = received(httpx.post(f"{edge}/reports/1", headers=token))
    assert posted["x-forwarded-scopes"] == [USER_SCOPES]
    deleting = httpx.post(
        f"{edge}/reports/2", headers={**token, "X-HTTP-Method-Override": "DELETE"}
    )
    assert deleting.status_code == 403
    assert deleting.headers["www-authenticate"] == insufficient("admin", metadata_url(deployment))
    assert "/reports/2" not in deployment.upstream.seen


def test_an_override_spelled_with_underscores_never_reaches_the_upstream(
    edge: str, deployment: Deployment
) -> None:
    response = httpx.post(
        f"{edge}/public/underscored", headers={"X_HTTP_Method_Override": "DELETE"}
    )
    headers = received(response)
    assert not [n for n in headers if n.replace("_", "-") == "x-http-method-override"]
