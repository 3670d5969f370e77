"""Authorization server metadata (RFC 8414 §2-§3): the source of truth clients discover."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config import RouteConfig
from tests.support.app import ISSUER, make_client
from tests.support.issuer import JWKS, METADATA, running


@pytest.fixture
def metadata(client, confidential, resource_server):
    response = client.get(METADATA)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_issuer_is_the_configured_one(metadata, config):
    assert metadata["issuer"] == config.issuer == ISSUER


@pytest.mark.parametrize(
    ("name", "path"),
    [
        pytest.param("authorization_endpoint", "/oauth/authorize", id="authorize"),
        pytest.param("token_endpoint", "/oauth/token", id="token"),
        pytest.param("revocation_endpoint", "/oauth/revoke", id="revocation"),
        pytest.param("introspection_endpoint", "/oauth/introspect", id="introspection"),
        pytest.param("jwks_uri", JWKS, id="jwks"),
    ],
)
def test_every_endpoint_is_listed_and_served(client, metadata, name, path):
    assert metadata[name] == ISSUER + path
    if name in ("jwks_uri", "authorization_endpoint"):
        response = client.get(path)
    else:
        response = client.post(path)
    assert response.status_code not in (404, 405), (path, response.status_code)
    assert response.status_code < 500


def test_grants_and_response_types(metadata):
    assert sorted(metadata["grant_types_supported"]) == [
        "authorization_code",
        "client_credentials",
        "password",
        "refresh_token",
    ]
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["response_modes_supported"] == ["query"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "token_endpoint_auth_methods_supported",
            {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
            id="token",
        ),
        pytest.param(
            "revocation_endpoint_auth_methods_supported",
            {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
            id="revocation",
        ),
        pytest.param(
            "introspection_endpoint_auth_methods_supported",
            {"client_secret_basic", "client_secret_post", "private_key_jwt"},
            id="introspection",
        ),
    ],
)
def test_auth_methods_per_endpoint(metadata, name, expected):
    assert set(metadata[name]) == expected


def test_scopes_supported_lists_what_clients_may_ask_for(client, storage, metadata):
    assert {"orders:read", "orders:write", "profile"} <= set(metadata["scopes_supported"])
    make_client(storage, scope="billing:read")
    assert "billing:read" in client.get(METADATA).json()["scopes_supported"]


def test_signing_algorithms(metadata, config):
    assert metadata["access_token_signing_alg_values_supported"] == [config.keys.algorithm]


def test_jwks_is_served_without_private_material(client, config):
    keys = client.get(JWKS).json()["keys"]
    assert len(keys) == 1
    assert keys[0]["use"] == "sig" and keys[0]["alg"] == config.keys.algorithm
    assert "d" not in keys[0]


def test_scopes_supported_names_the_routes_and_their_tools_scopes(client, config):
    """An MCP client choosing scopes from the server's metadata can find a tool's scope too
    (the same set RFC 9728 metadata and registration use: ``Resources.scopes``)."""
    route = RouteConfig(
        path="/mcp",
        upstream="http://127.0.0.1:9",
        scopes=(("mcp:use",),),
        mcp=True,
        mcp_tool_scopes=(("delete_*", (("mcp:admin",),)), ("*", ())),
    )
    with running(dataclasses.replace(config, routes=(route,))) as client:
        scopes = set(client.get(METADATA).json()["scopes_supported"])
    assert {"mcp:use", "mcp:admin"} <= scopes


def test_dpop_signing_algorithms_are_listed(metadata, client):
    """RFC 9449 §5.1: the algorithms a DPoP proof may use, in both documents."""
    expected = ["ES256", "EdDSA", "PS256", "RS256"]
    assert metadata["dpop_signing_alg_values_supported"] == expected
    openid = client.get("/.well-known/openid-configuration").json()
    assert openid["dpop_signing_alg_values_supported"] == expected
