"""Dynamic client registration (RFC 7591) at ``POST /oauth/register`` and each client's
configuration endpoint (RFC 7592), against a real app and database: every accepted field,
every refusal in RFC 7591 §3.2.2's shape, open and token modes, the per-address rate, and the
registered clients' own flows (authorization code with PKCE, client credentials)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway import accounts, registration_tokens
from gateway.app import create_app
from gateway.config import Config, ProxyConfig, RegistrationConfig, RouteConfig
from gateway.models import Client, ClientRegistration, RegistrationToken, User, sha256
from gateway.storage import Storage

ISSUER = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple"
REGISTER = "/oauth/register"
NATIVE_REDIRECT = "http://127.0.0.1/callback"
UPSTREAM = "http://127.0.0.1:9"
ROUTES = (
    RouteConfig(path="/orders", upstream=UPSTREAM, scopes=(("orders:read",), ("orders:admin",))),
    RouteConfig(
        path="/mcp",
        upstream=UPSTREAM,
        scopes=(("mcp",),),
        mcp=True,
        mcp_tool_scopes=(("delete_*", (("orders:delete",),)), ("*", ())),
    ),
)
#: what a registered client may ask for, with the default ``allowed_scopes``
ROUTE_SCOPES = {"orders:read", "orders:admin", "mcp", "orders:delete"}
MARKER = "zqYourAccountIsSuspendedzq"


def with_registration(config: Config, **registration: Any) -> Config:
    settings = {"dynamic": "open", **registration}
    return dataclasses.replace(config, routes=ROUTES, registration=RegistrationConfig(**settings))


@contextlib.contextmanager
def serving(config: Config, peer: str = "testclient") -> Iterator[TestClient]:
    app = create_app(config)
    with TestClient(
        app, base_url=ISSUER, follow_redirects=False, client=(peer, 50000)
    ) as test_client:
        yield test_client
    app.gateway.storage.dispose()


@pytest.fixture
def registrar(config: Config, storage: Storage) -> Iterator[TestClient]:
    """An app with the routes above and ``dynamic = "open"``."""
    with serving(with_registration(config)) as test_client:
        yield test_client


def native(**metadata: Any) -> dict[str, Any]:
    """What an MCP client sends (the MCP Python SDK's defaults)."""
    return {
        "redirect_uris": [NATIVE_REDIRECT],
        "client_name": "Agent",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        **metadata,
    }


def register(client: TestClient, metadata: Any, **headers: str) -> httpx.Response:
    return client.post(REGISTER, json=metadata, headers=headers)


def registered(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    return response.json()


def refused(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    assert body.get("error_description"), body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def row(storage: Storage, client_id: str) -> Client | None:
    with storage.session() as session:
        return session.scalar(sa.select(Client).where(Client.client_id == client_id))


# --- discovery and the endpoint's presence ------------------------------------------------------


def test_discovery_names_the_endpoint_and_the_scopes_a_client_may_register(registrar):
    for document in ("oauth-authorization-server", "openid-configuration"):
        metadata = registrar.get(f"/.well-known/{document}").json()
        assert metadata["registration_endpoint"] == f"{ISSUER}/oauth/register"
        assert ROUTE_SCOPES <= set(metadata["scopes_supported"])


def test_off_by_default_the_paths_are_unknown(client):
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert "registration_endpoint" not in metadata
    assert client.post(REGISTER, json=native()).status_code == 404
    assert client.get(REGISTER + "/abc", headers=bearer("x")).status_code == 404


# --- RFC 7591 §3.2.1: what a registration answers -----------------------------------------------


def test_a_native_public_client_registers(registrar, storage):
    before = int(time.time())
    body = registered(register(registrar, native(scope="mcp orders:read")))
    assert body == {
        "client_id": body["client_id"],
        "client_id_issued_at": body["client_id_issued_at"],
        "client_secret_expires_at": 0,
        "client_name": "Agent",
        "redirect_uris": [NATIVE_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        "dpop_bound_access_tokens": False,
        "scope": "mcp orders:read",
        "registration_client_uri": f"{ISSUER}/oauth/register/{body['client_id']}",
        "registration_access_token": body["registration_access_token"],
    }
    assert before <= body["client_id_issued_at"] <= time.time()
    stored = row(storage, body["client_id"])
    assert stored is not None
    assert stored.origin == "registration" and not stored.first_party
    assert not stored.can_introspect and stored.client_secret_hash is None
    # the registration access token is kept as its hash only
    assert stored.registration_token_hash == sha256(body["registration_access_token"])


def test_a_confidential_client_gets_a_secret_shown_once(registrar, storage):
    body = registered(
        register(
            registrar,
            {"grant_types": ["client_credentials"], "scope": "orders:read"},
        )
    )
    assert body["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591 §2 default
    assert body["client_secret_expires_at"] == 0
    assert body["response_types"] == [] and body["redirect_uris"] == []
    assert body["application_type"] == "web"
    stored = row(storage, body["client_id"])
    assert stored is not None and stored.client_secret_hash == sha256(body["client_secret"])
    assert stored.check_client_secret(body["client_secret"])


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({"client_name": "  Orders bot  "}, {"client_name": "Orders bot"}, id="name"),
        pytest.param({"client_name": None}, {"client_name": "Unnamed client"}, id="null-name"),
        pytest.param(
            {"client_uri": "https://agent.example/home"},
            {"client_uri": "https://agent.example/home"},
            id="client-uri",
        ),
        pytest.param({"scope": "mcp mcp"}, {"scope": "mcp"}, id="scope-deduplicated"),
        pytest.param({"scope": ""}, {}, id="empty-scope"),
        pytest.param(
            {"grant_types": ["authorization_code"], "response_types": None},
            {"grant_types": ["authorization_code"], "response_types": ["code"]},
            id="response-types-default",
        ),
        pytest.param(
            {"redirect_uris": ["com.example.agent:/cb", "http://localhost:7777/cb"]},
            {"redirect_uris": ["com.example.agent:/cb", "http://localhost:7777/cb"]},
            id="native-schemes",
        ),
        pytest.param(
            {"redirect_uris": ["http://[::1]/cb", "http://[::1]/cb"]},
            {"redirect_uris": ["http://[::1]/cb"]},
            id="redirects-deduplicated",
        ),
        pytest.param(
            {"token_endpoint_auth_method": "client_secret_post"},
            {"token_endpoint_auth_method": "client_secret_post"},
            id="post",
        ),
        pytest.param(
            {
                "application_type": "web",
                "redirect_uris": ["https://agent.example/cb"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
            {"application_type": "web", "redirect_uris": ["https://agent.example/cb"]},
            id="web",
        ),
    ],
)
def test_every_accepted_field_is_registered_as_sent(registrar, metadata, expected):
    body = registered(register(registrar, native(**metadata)))
    for field, value in expected.items():
        assert body[field] == value, field
    if metadata.get("scope") == "":
        assert "scope" not in body


def test_unknown_fields_are_ignored_and_nothing_is_chosen_by_the_client(registrar):
    body = registered(
        register(
            registrar,
            native(
                client_id="mine",
                client_secret="chosen",
                logo_uri="https://agent.example/logo.png",
                jwks_uri="https://agent.example/jwks",
                software_statement="eyJ.x.y",
                contacts=["ops@agent.example"],
                post_logout_redirect_uris=["https://agent.example/bye"],
                registration_access_token="chosen",
            ),
        )
    )
    assert body["client_id"] != "mine"
    assert body["registration_access_token"] != "chosen"
    assert "client_secret" not in body  # a public client has none
    for ignored in ("logo_uri", "jwks_uri", "software_statement", "contacts"):
        assert ignored not in body


# --- RFC 7591 §3.2.2: what a registration refuses ------------------------------------------------

REFUSALS = [
    # redirect URIs: the same rules as ``gateway client create``, then OpenID Connect's by type
    pytest.param({"redirect_uris": "http://127.0.0.1/cb"}, "invalid_redirect_uri", id="not-array"),
    pytest.param({"redirect_uris": [7]}, "invalid_redirect_uri", id="not-strings"),
    pytest.param({"redirect_uris": []}, "invalid_redirect_uri", id="code-without-redirect"),
    pytest.param({"redirect_uris": None}, "invalid_redirect_uri", id="null-redirects"),
    pytest.param({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", id="js"),
    pytest.param({"redirect_uris": ["data:text/html,x"]}, "invalid_redirect_uri", id="data"),
    pytest.param({"redirect_uris": ["/relative/cb"]}, "invalid_redirect_uri", id="relative"),
    pytest.param(
        {"redirect_uris": ["http://127.0.0.1/cb#frag"]}, "invalid_redirect_uri", id="fragment"
    ),
    pytest.param(
        {"redirect_uris": ["http://127.0.0.1/c b"]}, "invalid_redirect_uri", id="white-space"
    ),
    pytest.param({"redirect_uris": ["http://127.0.0.1/\x00"]}, "invalid_redirect_uri", id="nul"),
    pytest.param(
        {"redirect_uris": ["http://127.0.0.1/" + "a" * 2000]},
        "invalid_redirect_uri",
        id="too-long",
    ),
    pytest.param(
        {"redirect_uris": [f"http://127.0.0.1/{i}" for i in range(21)]},
        "invalid_redirect_uri",
        id="too-many",
    ),
    pytest.param(
        {"redirect_uris": ["https://agent.example/cb"]}, "invalid_redirect_uri", id="native-https"
    ),
    pytest.param(
        {"redirect_uris": ["http://agent.example/cb"]}, "invalid_redirect_uri", id="native-http"
    ),
    pytest.param(
        {"application_type": "web", "redirect_uris": ["http://127.0.0.1/cb"]},
        "invalid_redirect_uri",
        id="web-loopback-http",
    ),
    pytest.param(
        {"application_type": "web", "redirect_uris": ["https://localhost/cb"]},
        "invalid_redirect_uri",
        id="web-localhost",
    ),
    pytest.param(
        {"application_type": "web", "redirect_uris": ["https://127.0.0.2/cb"]},
        "invalid_redirect_uri",
        id="web-loopback-ip",
    ),
    pytest.param(
        {"application_type": "web", "redirect_uris": ["com.example.app:/cb"]},
        "invalid_redirect_uri",
        id="web-custom-scheme",
    ),
    pytest.param(
        {"application_type": None, "redirect_uris": [NATIVE_REDIRECT]},
        "invalid_redirect_uri",
        id="default-type-is-web",
    ),
    # grant and response types
    pytest.param({"grant_types": ["password"]}, "invalid_client_metadata", id="password-grant"),
    pytest.param({"grant_types": ["implicit"]}, "invalid_client_metadata", id="implicit"),
    pytest.param({"grant_types": []}, "invalid_client_metadata", id="no-grant"),
    pytest.param({"grant_types": "authorization_code"}, "invalid_client_metadata", id="grant-str"),
    pytest.param(
        {"grant_types": ["refresh_token"], "response_types": []},
        "invalid_client_metadata",
        id="refresh-alone",
    ),
    pytest.param({"response_types": ["token"]}, "invalid_client_metadata", id="token-response"),
    pytest.param({"response_types": []}, "invalid_client_metadata", id="code-grant-no-code"),
    pytest.param(
        {
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
        "invalid_client_metadata",
        id="code-response-without-code-grant",
    ),
    # client authentication
    pytest.param(
        {"token_endpoint_auth_method": "private_key_jwt"},
        "invalid_client_metadata",
        id="pkjwt-without-keys",
    ),
    pytest.param(
        {"token_endpoint_auth_method": ["none"]}, "invalid_client_metadata", id="method-array"
    ),
    pytest.param(
        {
            "grant_types": ["client_credentials"],
            "response_types": [],
            "token_endpoint_auth_method": "none",
        },
        "invalid_client_metadata",
        id="public-client-credentials",
    ),
    # scope, within [registration] allowed_scopes
    pytest.param({"scope": "openid"}, "invalid_client_metadata", id="scope-not-allowed"),
    pytest.param({"scope": "mcp admin"}, "invalid_client_metadata", id="one-scope-not-allowed"),
    pytest.param({"scope": ["mcp"]}, "invalid_client_metadata", id="scope-array"),
    pytest.param({"scope": 'mcp "x"'}, "invalid_client_metadata", id="scope-syntax"),
    # the rest
    pytest.param({"application_type": "desktop"}, "invalid_client_metadata", id="app-type"),
    pytest.param({"client_name": ""}, "invalid_client_metadata", id="empty-name"),
    pytest.param({"client_name": "x" * 201}, "invalid_client_metadata", id="long-name"),
    pytest.param({"client_name": "a\u202eb"}, "invalid_client_metadata", id="bidi-name"),
    pytest.param({"client_name": 5}, "invalid_client_metadata", id="number-name"),
    pytest.param({"client_uri": "javascript:x"}, "invalid_client_metadata", id="js-client-uri"),
    pytest.param(
        {"client_uri": "http://agent.example/"}, "invalid_client_metadata", id="http-client-uri"
    ),
    pytest.param(
        {"client_uri": "https://u:p@agent.example/"}, "invalid_client_metadata", id="credentials"
    ),
    pytest.param(
        {"client_uri": "https://agent.example:99999/"}, "invalid_client_metadata", id="bad-port"
    ),
]


@pytest.mark.parametrize(("metadata", "error"), REFUSALS)
def test_wrong_metadata_is_refused_and_registers_nothing(registrar, storage, metadata, error):
    refused(register(registrar, native(**metadata)), 400, error)
    with storage.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Client)) == 0
        # a refused registration does not count against the address
        assert session.scalar(sa.select(sa.func.count()).select_from(ClientRegistration)) == 0


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(native(redirect_uris=[f"https://evil.example/{MARKER}"]), id="redirect"),
        pytest.param(native(grant_types=[MARKER]), id="grant"),
        pytest.param(native(scope=MARKER), id="scope"),
        pytest.param(native(application_type=MARKER), id="type"),
        pytest.param(native(token_endpoint_auth_method=MARKER), id="method"),
        pytest.param(native(client_uri=f"ftp://{MARKER}"), id="client-uri"),
        pytest.param(native(client_name=MARKER * 10), id="name"),
    ],
)
def test_a_refusal_quotes_nothing_of_the_request(registrar, metadata):
    response = register(registrar, metadata)
    assert response.status_code == 400, response.text
    assert MARKER not in response.text


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        pytest.param(b"redirect_uris=x", "application/x-www-form-urlencoded", 400, id="form"),
        pytest.param(b'{"client_name": "x"}', "text/plain", 400, id="text-plain"),
        pytest.param(b"", "application/json", 400, id="empty"),
        pytest.param(b"{not json", "application/json", 400, id="not-json"),
        pytest.param(b'["x"]', "application/json", 400, id="array"),
        pytest.param(b'"x"', "application/json", 400, id="string"),
        pytest.param(b"\xff\xfe{}", "application/json", 400, id="not-utf8"),
        pytest.param(b'{"a": NaN}', "application/json", 400, id="nan"),
        pytest.param(b'{"a": 1, "a": 2}', "application/json", 400, id="repeated-member"),
        pytest.param(b"[" * 100000 + b"]" * 100000, "application/json", 413, id="too-large"),
        pytest.param(b"[" * 30000 + b"]" * 30000, "application/json", 400, id="deep"),
        pytest.param(b"{}" + b" " * 70000, "application/json", 413, id="padded"),
    ],
)
def test_a_body_that_is_not_one_small_json_object_is_refused(
    registrar, content, content_type, status
):
    response = registrar.post(REGISTER, content=content, headers={"content-type": content_type})
    refused(response, status, "invalid_request")


def test_a_json_content_type_with_a_charset_is_accepted(registrar):
    response = registrar.post(
        REGISTER,
        content=json.dumps(native()).encode(),
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    registered(response)


# --- "token" mode: an initial access token per registration ------------------------------------


def make_token(storage: Storage, **kwargs: Any) -> registration_tokens.NewToken:
    with storage.session() as session:
        return registration_tokens.create_token(session, **kwargs)


@pytest.fixture
def token_mode(config: Config, storage: Storage) -> Iterator[TestClient]:
    with serving(with_registration(config, dynamic="token")) as test_client:
        yield test_client


def test_token_mode_without_a_token_is_a_bare_bearer_challenge(token_mode, storage):
    response = register(token_mode, native())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'
    response = register(token_mode, native(), Authorization="Basic YTpi")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'


@pytest.mark.parametrize("kind", ["unknown", "expired", "revoked", "used-up", "empty"])
def test_token_mode_refuses_a_token_that_allows_nothing(token_mode, storage, kind):
    new = make_token(storage)
    token = new.token
    headers = bearer(token)
    if kind == "unknown":
        headers = bearer(secrets.token_urlsafe(32))
    elif kind == "expired":
        token = make_token(storage, ttl=60, now=time.time() - 61).token
        headers = bearer(token)
    elif kind == "revoked":
        with storage.session() as session:
            assert registration_tokens.revoke_token(session, new.row.id)
    elif kind == "used-up":
        registered(register(token_mode, native(), **headers))
    elif kind == "empty":
        headers = {"Authorization": "Bearer "}
    response = register(token_mode, native(), **headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith(
        'Bearer realm="gateway", error="invalid_token"'
    )
    assert response.json()["error"] == "invalid_token"


def assert_repeated(response: httpx.Response) -> None:
    """RFC 6750 §3.1: a repeated parameter is ``invalid_request`` (400), as at every protected
    resource of the gateway, in the ``Bearer`` scheme: these tokens are never DPoP-bound."""
    assert response.status_code == 400, response.text
    assert response.headers["www-authenticate"].startswith(
        'Bearer realm="gateway", error="invalid_request"'
    )
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("second", ["Bearer", "DPoP"])
def test_two_authorization_headers_are_invalid_request_and_spend_nothing(
    token_mode, storage, second
):
    new = make_token(storage)
    two = [("Authorization", f"Bearer {new.token}"), ("Authorization", f"{second} {new.token}")]
    assert_repeated(token_mode.post(REGISTER, json=native(), headers=two))  # type: ignore[arg-type]
    registered(register(token_mode, native(), **bearer(new.token)))  # its one use is left


def test_the_dpop_scheme_is_no_registration_token(token_mode, storage):
    response = register(token_mode, native(), Authorization=f"DPoP {make_token(storage).token}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'


def test_a_token_allows_its_uses_and_a_failed_registration_spends_none(token_mode, storage):
    new = make_token(storage, uses=2)
    refused(
        register(token_mode, native(grant_types=["password"]), **bearer(new.token)),
        400,
        "invalid_client_metadata",
    )
    registered(register(token_mode, native(), **bearer(new.token)))
    registered(register(token_mode, native(), **bearer(new.token)))
    response = register(token_mode, native(), **bearer(new.token))
    assert response.status_code == 401
    with storage.session() as session:
        stored = session.get(RegistrationToken, new.row.id)
        assert stored is not None and stored.uses == 2
        assert registration_tokens.status(stored) == "used"
        assert new.token not in {stored.token_hash, stored.id}


def test_a_wrong_token_is_refused_before_the_body_is_read(token_mode):
    response = token_mode.post(
        REGISTER, content=b"not json", headers={**bearer("nope"), "content-type": "text/plain"}
    )
    assert response.status_code == 401


def test_open_mode_ignores_an_authorization_header(registrar):
    registered(register(registrar, native(), **bearer("whatever")))


# --- the per-address rate ------------------------------------------------------------------------


def test_at_most_the_limit_per_address_per_hour(config, storage):
    limited = with_registration(config, max_per_address_per_hour=2)
    with serving(limited) as test_client:
        registered(register(test_client, native()))
        registered(register(test_client, native()))
        response = register(test_client, native())
        body = refused(response, 429, "too_many_requests")
        assert "2 clients" in body["error_description"]
        retry_after = int(response.headers["retry-after"])
        assert 3590 <= retry_after <= 3600
        # a refused attempt writes nothing, so trying again never pushes the wait further
        with storage.session() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(ClientRegistration)) == 2
            assert session.scalar(sa.select(sa.func.count()).select_from(Client)) == 2


def test_the_hour_slides_and_retry_after_says_when_a_slot_frees(config, storage):
    now = time.time()
    with storage.session() as session:
        session.add(ClientRegistration(address="testclient", at=now - 3601, expires_at=now - 1))
        session.add(ClientRegistration(address="testclient", at=now - 3000, expires_at=now + 600))
    with serving(with_registration(config, max_per_address_per_hour=2)) as test_client:
        registered(register(test_client, native()))  # the one older than an hour is not counted
        response = register(test_client, native())
        refused(response, 429, "too_many_requests")
        assert 595 <= int(response.headers["retry-after"]) <= 600


def test_the_address_is_the_throttles_behind_trusted_proxies(config, storage):
    limited = dataclasses.replace(
        with_registration(config, max_per_address_per_hour=1),
        proxy=ProxyConfig(trusted_proxies=("10.0.0.0/8",)),
    )
    with serving(limited, peer="10.1.2.3") as test_client:
        registered(register(test_client, native(), **{"X-Forwarded-For": "198.51.100.7"}))
        forged = {
            "X-Forwarded-For": "203.0.113.9, 198.51.100.7"
        }  # the left one is the client's word
        refused(register(test_client, native(), **forged), 429, "too_many_requests")
        registered(register(test_client, native(), **{"X-Forwarded-For": "198.51.100.8"}))
        # one IPv6 /64 is one address
        registered(register(test_client, native(), **{"X-Forwarded-For": "2001:db8::1"}))
        v6 = {"X-Forwarded-For": "2001:db8::ffff"}
        refused(register(test_client, native(), **v6), 429, "too_many_requests")
    with serving(limited, peer="192.0.2.50") as test_client:
        # an untrusted peer's X-Forwarded-For is ignored: it is counted as itself
        registered(register(test_client, native(), **{"X-Forwarded-For": "198.51.100.99"}))
        refused(register(test_client, native()), 429, "too_many_requests")


# --- RFC 7592: the client configuration endpoint -----------------------------------------------


def configuration(client: TestClient, body: dict[str, Any]) -> str:
    uri = body["registration_client_uri"]
    assert uri.startswith(ISSUER)
    return uri[len(ISSUER) :]


def test_read_answers_the_registration_with_a_new_token(registrar, storage):
    body = registered(register(registrar, native(client_uri="https://agent.example/")))
    path = configuration(registrar, body)
    response = registrar.get(path, headers=bearer(body["registration_access_token"]))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    read = response.json()
    new_token = read.pop("registration_access_token")
    expected = {k: v for k, v in body.items() if k != "registration_access_token"}
    assert read == expected
    # only the new token opens it now (RFC 7592 §3: every answer carries one; §2.1: rotation)
    old = registrar.get(path, headers=bearer(body["registration_access_token"]))
    assert old.status_code == 401 and old.json()["error"] == "invalid_token"
    assert registrar.get(path, headers=bearer(new_token)).status_code == 200


def test_update_replaces_the_metadata(registrar, storage):
    body = registered(register(registrar, native(scope="mcp", client_uri="https://a.example/")))
    path = configuration(registrar, body)
    update = {
        "client_id": body["client_id"],
        "client_name": "Agent 2",
        "redirect_uris": ["http://127.0.0.1/other", "com.example.agent:/cb"],
        "grant_types": ["authorization_code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        "unknown_field": 1,
    }
    response = registrar.put(path, json=update, headers=bearer(body["registration_access_token"]))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["client_name"] == "Agent 2"
    assert answer["redirect_uris"] == update["redirect_uris"]
    assert answer["grant_types"] == ["authorization_code"]
    # omitted fields are deleted (RFC 7592 §2.2): no scope, no client_uri any more
    assert "scope" not in answer and "client_uri" not in answer
    assert answer["client_id_issued_at"] == body["client_id_issued_at"]
    stored = row(storage, body["client_id"])
    assert stored is not None
    assert stored.redirect_uris == update["redirect_uris"] and stored.scope == ""
    assert stored.registration_token_hash == sha256(answer["registration_access_token"])
    assert stored.origin == "registration" and not stored.first_party


def test_update_of_a_confidential_client_may_prove_its_secret(registrar):
    body = registered(register(registrar, {"grant_types": ["client_credentials"]}))
    path = configuration(registrar, body)
    update = {
        "client_id": body["client_id"],
        "client_secret": body["client_secret"],
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "orders:read",
    }
    response = registrar.put(path, json=update, headers=bearer(body["registration_access_token"]))
    assert response.status_code == 200, response.text
    assert response.json()["token_endpoint_auth_method"] == "client_secret_post"
    assert "client_secret" not in response.json()  # kept as a hash: not shown again


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param({"client_id": None}, "invalid_client_metadata", id="no-client-id"),
        pytest.param({"client_id": "another"}, "invalid_client_metadata", id="other-client-id"),
        pytest.param({"client_secret": "guess"}, "invalid_client_metadata", id="secret-on-public"),
        pytest.param(
            {"registration_access_token": "x"}, "invalid_client_metadata", id="server-field"
        ),
        pytest.param({"client_id_issued_at": 1}, "invalid_client_metadata", id="issued-at"),
        pytest.param(
            {"token_endpoint_auth_method": "client_secret_basic"},
            "invalid_client_metadata",
            id="public-to-confidential",
        ),
        pytest.param({"redirect_uris": ["https://x.example/"]}, "invalid_redirect_uri", id="uri"),
        pytest.param({"scope": "openid"}, "invalid_client_metadata", id="scope"),
    ],
)
def test_a_wrong_update_changes_nothing(registrar, storage, change, error):
    body = registered(register(registrar, native(scope="mcp")))
    path = configuration(registrar, body)
    update = {**native(scope="mcp"), "client_id": body["client_id"], **change}
    update = {k: v for k, v in update.items() if v is not None}
    token = body["registration_access_token"]
    refused(registrar.put(path, json=update, headers=bearer(token)), 400, error)
    stored = row(storage, body["client_id"])
    assert stored is not None and stored.scope == "mcp"
    # nothing changed: the token still works
    assert registrar.get(path, headers=bearer(token)).status_code == 200


def test_a_confidential_clients_wrong_secret_is_refused(registrar):
    body = registered(register(registrar, {"grant_types": ["client_credentials"]}))
    update = {
        "client_id": body["client_id"],
        "client_secret": "not-it",
        "grant_types": ["client_credentials"],
    }
    response = registrar.put(
        configuration(registrar, body),
        json=update,
        headers=bearer(body["registration_access_token"]),
    )
    refused(response, 400, "invalid_client_metadata")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_the_configuration_endpoint_needs_the_clients_own_token(registrar, storage, method):
    mine = registered(register(registrar, native()))
    other = registered(register(registrar, native()))
    path = configuration(registrar, mine)
    cases = [
        {},
        bearer("not-a-token"),
        bearer(other["registration_access_token"]),
        {"Authorization": "Basic YTpi"},
    ]
    for headers in cases:
        response = registrar.request(method, path, json=native(), headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith('Bearer realm="gateway"')
    # a client made by the CLI has no configuration endpoint
    with storage.session() as session:
        made = accounts.create_client(
            session, "CLI app", [NATIVE_REDIRECT], ["authorization_code"], "", "none"
        )
    response = registrar.request(method, f"{REGISTER}/{made.client.client_id}", headers=bearer("x"))
    assert response.status_code == 401
    # an unknown client: 401 too (RFC 7592 §2.1), never 404
    response = registrar.request(method, f"{REGISTER}/nobody", headers=bearer("x"))
    assert response.status_code == 401
    assert row(storage, mine["client_id"]) is not None


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_the_configuration_endpoint_refuses_two_authorization_headers(registrar, method):
    body = registered(register(registrar, native()))
    path = configuration(registrar, body)
    token = body["registration_access_token"]
    two = [("Authorization", f"Bearer {token}")] * 2
    assert_repeated(registrar.request(method, path, json=native(), headers=two))  # type: ignore[arg-type]
    assert registrar.get(path, headers=bearer(token)).status_code == 200  # not rotated


def test_head_is_refused_rather_than_rotating_the_token_unseen(registrar):
    body = registered(register(registrar, native()))
    path = configuration(registrar, body)
    token = body["registration_access_token"]
    assert registrar.head(path, headers=bearer(token)).status_code == 405
    assert registrar.get(path, headers=bearer(token)).status_code == 200


def test_delete_removes_the_client_and_revokes_every_grant(registrar, storage, resource_server):
    body = registered(
        register(registrar, {"grant_types": ["client_credentials"], "scope": "orders:read"})
    )
    issued = registrar.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(body["client_id"], body["client_secret"]),
    )
    assert issued.status_code == 200, issued.text
    access = issued.json()["access_token"]
    assert introspect(registrar, resource_server, access)["active"] is True

    path = configuration(registrar, body)
    response = registrar.delete(path, headers=bearer(body["registration_access_token"]))
    assert response.status_code == 204 and response.content == b""
    assert row(storage, body["client_id"]) is None
    # durable before the answer: refused by introspection at once
    assert introspect(registrar, resource_server, access) == {"active": False}
    again = registrar.delete(path, headers=bearer(body["registration_access_token"]))
    assert again.status_code == 401
    denied = registrar.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(body["client_id"], body["client_secret"]),
    )
    assert denied.status_code == 401


# --- the registered clients' flows ---------------------------------------------------------------


def introspect(client: TestClient, rs: Any, token: str) -> dict[str, Any]:
    response = client.post("/oauth/introspect", data={"token": token}, auth=rs.auth)
    assert response.status_code == 200, response.text
    return response.json()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def sign_in_and_allow(client: TestClient, url: str, user: User) -> dict[str, str]:
    """Drive the login form and the consent page as a person would; the redirect's query."""
    page = client.get(url)
    if 'name="password"' in page.text:
        form = {
            "action": "login",
            "email": user.email,
            "password": PASSWORD,
            "csrf_token": csrf_token(page),
        }
        assert client.post(url, data=form).status_code == 303
        page = client.get(url)
    assert page.status_code == 200 and 'value="allow"' in page.text, page.text  # never first-party
    answer = client.post(url, data={"action": "allow", "csrf_token": csrf_token(page)})
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


def code_flow(
    client: TestClient, body: dict[str, Any], user: User, scope: str | None, port: int = 53127
) -> httpx.Response:
    verifier, challenge = pkce_pair()
    redirect_uri = f"http://127.0.0.1:{port}/callback"  # RFC 8252 §7.3: any loopback port
    params = {
        "response_type": "code",
        "client_id": body["client_id"],
        "redirect_uri": redirect_uri,
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": scope,
    }
    url = "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})
    answer = sign_in_and_allow(client, url, user)
    assert answer["state"] == "s1" and answer["iss"] == ISSUER
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": body["client_id"],
            "code": answer["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )


def test_a_registered_public_client_signs_a_person_in_with_pkce(registrar, user):
    body = registered(register(registrar, native(scope="mcp")))
    issued = code_flow(registrar, body, user, scope=None)
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    assert tokens["scope"] == "mcp"  # the registered scope is the default
    # step-up: a scope beyond the default but allowed to registered clients (an MCP tool's)
    stepped = code_flow(registrar, body, user, scope="mcp orders:delete")
    assert stepped.status_code == 200, stepped.text
    assert stepped.json()["scope"] == "mcp orders:delete"
    # the refresh keeps it (the registered default is no cap)
    refreshed = registrar.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": body["client_id"],
            "refresh_token": stepped.json()["refresh_token"],
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "mcp orders:delete"


def test_a_registered_public_client_needs_pkce_and_allowed_scopes(registrar, user):
    body = registered(register(registrar, native(scope="mcp")))
    base = {
        "response_type": "code",
        "client_id": body["client_id"],
        "redirect_uri": NATIVE_REDIRECT,
        "state": "s",
    }
    no_pkce = registrar.get("/oauth/authorize?" + urlencode(base))
    assert no_pkce.status_code == 302
    assert parse_qs(urlsplit(no_pkce.headers["location"]).query)["error"] == ["invalid_request"]
    _, challenge = pkce_pair()
    outside = {
        **base,
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    answer = registrar.get("/oauth/authorize?" + urlencode(outside))
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_scope"]


def test_a_registered_confidential_client_gets_client_credentials_tokens(registrar):
    body = registered(
        register(
            registrar,
            {
                "client_name": "Batch job",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_post",
                "scope": "orders:read",
            },
        )
    )
    credentials = {"client_id": body["client_id"], "client_secret": body["client_secret"]}
    default = registrar.post(
        "/oauth/token", data={"grant_type": "client_credentials", **credentials}
    )
    assert default.status_code == 200, default.text
    assert default.json()["scope"] == "orders:read"
    wider = registrar.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "orders:admin", **credentials},
    )
    assert wider.status_code == 200, wider.text
    assert wider.json()["scope"] == "orders:admin"
    beyond = registrar.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "openid", **credentials},
    )
    assert beyond.status_code == 400 and beyond.json()["error"] == "invalid_scope"
    basic = registrar.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(body["client_id"], body["client_secret"]),
    )
    assert basic.status_code == 401  # registered for client_secret_post only


def test_allowed_scopes_from_the_config_bound_registration_and_requests(config, storage):
    narrow = with_registration(config, allowed_scopes=("orders:read",))
    with serving(narrow) as test_client:
        metadata = test_client.get("/.well-known/oauth-authorization-server").json()
        assert "orders:read" in metadata["scopes_supported"]
        refused(register(test_client, native(scope="mcp")), 400, "invalid_client_metadata")
        body = registered(register(test_client, {"grant_types": ["client_credentials"]}))
        issued = test_client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "mcp"},
            auth=(body["client_id"], body["client_secret"]),
        )
        assert issued.status_code == 400 and issued.json()["error"] == "invalid_scope"


def test_an_update_with_a_secret_no_client_has_is_refused(registrar):
    body = registered(register(registrar, {"grant_types": ["client_credentials"]}))
    update = {
        "client_id": body["client_id"],
        "client_secret": "\ud800",  # a lone surrogate: JSON carries it, no secret holds it
        "grant_types": ["client_credentials"],
    }
    response = registrar.put(
        configuration(registrar, body),
        content=json.dumps(update).encode(),  # ASCII: the surrogate as an escape
        headers={**bearer(body["registration_access_token"]), "content-type": "application/json"},
    )
    refused(response, 400, "invalid_client_metadata")


def test_the_access_log_names_one_route_for_every_configuration_endpoint(
    config, storage, access_log
):
    app = create_app(with_registration(config))
    app.access_log = app.proxy.access_log = access_log.log
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as test_client:
        body = registered(register(test_client, native()))
        token = body["registration_access_token"]
        test_client.get(configuration(test_client, body), headers=bearer(token))
    app.gateway.storage.dispose()
    registration, read = access_log.entries(2)
    assert registration["route"] == "/oauth/register" and registration["status"] == 201
    assert read["route"] == "/oauth/register/{client_id}" and read["status"] == 200
    assert read["path"] == f"/oauth/register/{body['client_id']}"
    for entry in (registration, read):
        assert token not in str(entry)


def test_delete_ends_a_persons_sign_in_with_the_client(registrar, user, resource_server):
    body = registered(register(registrar, native(scope="mcp")))
    issued = code_flow(registrar, body, user, scope=None)
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    assert introspect(registrar, resource_server, tokens["access_token"])["active"] is True
    response = registrar.delete(
        configuration(registrar, body), headers=bearer(body["registration_access_token"])
    )
    assert response.status_code == 204
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert introspect(registrar, resource_server, token) == {"active": False}
    refreshed = registrar.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": body["client_id"],
            "refresh_token": tokens["refresh_token"],
        },
    )
    assert refreshed.status_code == 401 and refreshed.json()["error"] == "invalid_client"
