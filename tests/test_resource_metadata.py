"""RFC 9728 protected resource metadata, served by the gateway's own app (issue 17 §2): the
path-inserted well-known URLs, Host picking, the document, and the refusals, from a config
loaded from a real TOML file; then discovery as a client does it, from a route's first 401."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from gateway.app import GatewayApp
from gateway.config import Config, load_config

ISSUER = "https://auth.example.com"
PREFIX = "/.well-known/oauth-protected-resource"
UP = "http://127.0.0.1:9"
ROUTES = f"""
[[routes]]
name = "orders"
path = "/orders"
upstream = "{UP}"
scopes = ["orders:read", "openid"]
resource_name = "Orders"
resource_documentation = "https://docs.example.com/orders"

[[routes]]
name = "orders-admin"
path = "/orders/admin"
upstream = "{UP}"
scopes = [["orders:admin"], ["root"]]

[[routes]]
name = "mcp"
path = "/mcp"
upstream = "{UP}"
audience = "https://api.example.com/mcp"
scopes = ["mcp:use"]
mcp = true
mcp_tool_scopes = {{ "delete_*" = ["mcp:admin"] }}

[[routes]]
name = "mcp-eu"
host = "eu.example.com"
path = "/mcp"
upstream = "{UP}"
audience = "https://eu.example.com/mcp"
resource_name = "Tools (EU)"

[[routes]]
name = "encoded"
path = "/a b"
upstream = "{UP}"
audience = "https://api.example.com/a%20b"

[[routes]]
name = "public"
path = "/public"
upstream = "{UP}"
public = true
audience = "https://public.example.com/"
"""


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    """The suite's config fixture, loaded from TOML with routes (its app and client follow)."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'issuer = "{ISSUER}"\n[database]\nurl = {json.dumps(database_url)}\n'
        '[keys]\ndir = "keys"\n[tokens]\naudience = "https://api.example.com"\n' + ROUTES
    )
    return load_config(path)


@pytest.fixture
def web(app: GatewayApp) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://api.example.com", follow_redirects=False) as client:
        yield client


ORDERS = {
    "resource": "https://api.example.com",
    "authorization_servers": [ISSUER],
    "scopes_supported": ["orders:admin", "orders:read", "root"],
    "bearer_methods_supported": ["header"],
    "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "PS256", "RS256"],
    "resource_name": "Orders",
    "resource_documentation": "https://docs.example.com/orders",
}
MCP = {
    "resource": "https://api.example.com/mcp",
    "authorization_servers": [ISSUER],
    "scopes_supported": ["mcp:admin", "mcp:use"],
    "bearer_methods_supported": ["header"],
    "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "PS256", "RS256"],
}
MCP_EU = {
    "resource": "https://eu.example.com/mcp",
    "authorization_servers": [ISSUER],
    "scopes_supported": [],
    "bearer_methods_supported": ["header"],
    "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "PS256", "RS256"],
    "resource_name": "Tools (EU)",
}


@pytest.mark.parametrize(
    ("path", "host", "document"),
    [
        pytest.param(PREFIX, "api.example.com", ORDERS, id="identifier-without-path"),
        pytest.param(PREFIX + "?x=1", "api.example.com", ORDERS, id="query-ignored"),
        pytest.param(PREFIX + "/mcp", "api.example.com", MCP, id="path-inserted"),
        pytest.param(PREFIX + "/mcp", "eu.example.com", MCP_EU, id="host-picks"),
        pytest.param(PREFIX + "/mcp", "EU.Example.com.:443", MCP_EU, id="host-normalised"),
        pytest.param(PREFIX + "/mcp", "api.example.com:8443", MCP, id="host-port"),
    ],
)
def test_the_document(web: TestClient, path: str, host: str, document: dict[str, object]) -> None:
    response = web.get(path, headers={"Host": host})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "max-age=300"
    # RFC 9728 §3.3: a client compares "resource" with the identifier it started from
    assert response.json() == document


def test_a_percent_encoded_identifier(web: TestClient) -> None:
    response = web.get(PREFIX + "/a%20b")
    assert response.json()["resource"] == "https://api.example.com/a%20b"


def test_head_has_the_headers_and_no_body(web: TestClient) -> None:
    got, head = web.get(PREFIX + "/mcp"), web.head(PREFIX + "/mcp")
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "cache-control"):
        assert head.headers[name] == got.headers[name]


@pytest.mark.parametrize(
    ("path", "host"),
    [
        pytest.param(PREFIX + "/orders", "api.example.com", id="a-route-path-not-an-identifier"),
        pytest.param(PREFIX + "/mcp/", "api.example.com", id="trailing-slash"),
        pytest.param(PREFIX + "/MCP", "api.example.com", id="case"),
        pytest.param(PREFIX + "/", "api.example.com", id="lone-slash"),
        pytest.param(PREFIX + "/a%2520b", "api.example.com", id="encoded-twice"),
        pytest.param(PREFIX + "/public", "public.example.com", id="public-routes-make-none"),
        pytest.param(PREFIX + "/mcp", "other.example.com", id="host-matches-none-of-two"),
        pytest.param(PREFIX + "x", "api.example.com", id="not-below-the-prefix"),
    ],
)
def test_no_resource_is_404_json(web: TestClient, path: str, host: str) -> None:
    response = web.get(path, headers={"Host": host})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow(web: TestClient, method: str) -> None:
    for path in (PREFIX, PREFIX + "/mcp", PREFIX + "/nothing"):
        response = web.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json()["error"] == "method_not_allowed"


CHALLENGE = re.compile(r'resource_metadata="([^"]+)"')


@pytest.mark.parametrize(
    ("route", "host", "identifier", "scope"),
    [
        pytest.param("/mcp", "api.example.com", "https://api.example.com/mcp", "mcp:use"),
        pytest.param("/mcp", "eu.example.com", "https://eu.example.com/mcp", None),
        pytest.param(
            "/orders/1", "api.example.com", "https://api.example.com", "orders:read openid"
        ),
        pytest.param("/orders/admin", "x.example.com", "https://api.example.com", "orders:admin"),
    ],
)
def test_discovery_from_the_first_401(
    web: TestClient, route: str, host: str, identifier: str, scope: str | None
) -> None:
    """What an MCP client does: call, read the 401's challenge, fetch the metadata it names,
    check its ``resource``, and find the authorization server to ask (with the scope named)."""
    refused = web.get(route, headers={"Host": host})
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    found = CHALLENGE.search(challenge)
    assert found is not None, challenge
    url = urlsplit(found.group(1))
    assert url.scheme == "https"
    assert (f'scope="{scope}"' in challenge) is (scope is not None)
    document = web.get(url.path, headers={"Host": url.netloc})
    assert document.status_code == 200
    assert document.json()["resource"] == identifier
    assert document.json()["authorization_servers"] == [ISSUER]
