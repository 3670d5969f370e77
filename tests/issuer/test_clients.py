"""Clients (RFC 6749 §2): types, authentication methods, and what each client may ask for.

Confidential clients authenticate with the one method they registered (RFC 7591
``token_endpoint_auth_method``); public clients use "none". Grant types, redirect URIs and
scopes are enforced per client; redirect URIs match exactly (RFC 9700 §2.1) except for the
port of a loopback IP literal (RFC 8252 §7.3).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.models import sha256
from tests.support.app import make_client
from tests.support.issuer import (
    REDIRECT_URI,
    authorize_url,
    oauth_error,
    password_grant,
    redirect_params,
    token_request,
    tokens,
)


def test_confidential_secret_is_hashed_at_rest(storage, confidential):
    with storage.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM clients WHERE client_id = :id"), {"id": confidential.client_id}
        ).one()
    values = [str(v) for v in row]
    assert confidential.client_secret
    assert not any(confidential.client_secret in v for v in values)
    assert row.client_secret_hash == sha256(confidential.client_secret)


def test_public_client_has_no_secret(storage, public):
    assert public.client_secret is None
    with storage.engine.connect() as conn:
        secret_hash = conn.execute(
            sa.text("SELECT client_secret_hash FROM clients WHERE client_id = :id"),
            {"id": public.client_id},
        ).scalar_one()
    assert secret_hash is None


# --- client authentication at the token endpoint (RFC 6749 §2.3.1) ------------------------------


def test_client_secret_basic_is_the_default(client, user, confidential):
    assert confidential.row.token_endpoint_auth_method == "client_secret_basic"
    tokens(password_grant(client, confidential))


def test_client_secret_post_works_for_a_client_registered_for_it(client, user, poster):
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": user.email,
            "password": "correct horse battery staple",
            "client_id": poster.client_id,
            "client_secret": poster.client_secret,
        },
    )
    tokens(response)


def test_basic_refused_for_a_client_registered_for_post(client, user, poster):
    response = password_grant(client, poster)  # sends HTTP Basic
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


def test_post_refused_for_a_client_registered_for_basic(client, user, confidential):
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": user.email,
            "password": "correct horse battery staple",
            "client_id": confidential.client_id,
            "client_secret": confidential.client_secret,
        },
    )
    oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(lambda c: (c.client_id, "wrong-secret"), id="wrong-secret"),
        pytest.param(lambda c: ("no-such-client", c.client_secret), id="unknown-client"),
        pytest.param(lambda c: (c.client_id, ""), id="empty-secret"),
        pytest.param(lambda c: None, id="no-credentials"),
    ],
)
def test_bad_client_credentials_are_refused(client, user, confidential, auth):
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": user.email, "password": "x" * 10},
        auth=auth(confidential),
    )
    oauth_error(response, 401, "invalid_client")
    assert "www-authenticate" in response.headers


def test_confidential_client_cannot_pose_as_public(client, user, confidential):
    """RFC 6749 §3.2.1: a confidential client MUST authenticate; its id alone is not enough."""
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": user.email,
            "password": "correct horse battery staple",
            "client_id": confidential.client_id,
        },
    )
    oauth_error(response, 401, "invalid_client")


def test_public_client_authenticates_with_its_id(client, user, public):
    tokens(password_grant(client, public))


def test_public_client_sending_a_secret_is_refused(client, user, public):
    response = password_grant(client, public, client_secret="made-up")
    oauth_error(response, 401, "invalid_client")


# --- grant types and scopes per client ---------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "form"),
    [
        pytest.param(
            ("client_credentials",),
            {"grant_type": "password", "username": "alice@example.com", "password": "x" * 9},
            id="password-not-registered",
        ),
        pytest.param(("password",), {"grant_type": "client_credentials"}, id="cc-not-registered"),
        pytest.param(
            ("password",),
            {"grant_type": "authorization_code", "code": "abc", "redirect_uri": REDIRECT_URI},
            id="code-not-registered",
        ),
        pytest.param(
            ("password",),
            {"grant_type": "refresh_token", "refresh_token": "abc"},
            id="refresh-not-registered",
        ),
    ],
)
def test_grant_type_must_be_registered(client, storage, user, registered, form):
    app = make_client(storage, grant_types=registered, redirect_uris=(REDIRECT_URI,))
    oauth_error(token_request(client, app, **form), 400, "unauthorized_client")


def test_response_type_code_needs_the_authorization_code_grant(client, storage):
    app = make_client(storage, grant_types=("password",))
    response = client.get(authorize_url(app))
    params = redirect_params(response)
    assert params["error"] == "unauthorized_client"
    assert params["state"] == "xyz"


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param("admin", id="unknown"),
        pytest.param("orders:read admin", id="one-unknown"),
        pytest.param("orders:read:extra", id="prefix-lookalike"),
    ],
)
def test_scopes_outside_the_clients_are_refused(client, user, confidential, scope):
    oauth_error(password_grant(client, confidential, scope=scope), 400, "invalid_scope")


def test_scopes_outside_the_clients_are_refused_at_authorize(client, confidential):
    params = redirect_params(client.get(authorize_url(confidential, scope="admin")))
    assert params["error"] == "invalid_scope"
    assert params["state"] == "xyz"


def test_no_scope_asked_gives_the_clients_scope(client, user, confidential):
    assert tokens(password_grant(client, confidential))["scope"] == confidential.row.scope


def test_a_subset_of_the_clients_scope_is_granted(client, user, confidential):
    assert tokens(password_grant(client, confidential, scope="orders:read"))["scope"] == (
        "orders:read"
    )


# --- redirect URIs (RFC 9700 §2.1, RFC 8252 §7.3) ----------------------------------------------

LOOPBACK = "http://127.0.0.1:9999/callback"
LOOPBACK6 = "http://[::1]:9999/cb"
LOCALHOST = "http://localhost:9999/cb"
HTTPS = "https://app.example.com/cb"


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param(LOOPBACK, id="exact-loopback"),
        pytest.param(HTTPS, id="exact-https"),
        pytest.param(LOCALHOST, id="exact-localhost"),
        pytest.param("http://127.0.0.1:53124/callback", id="loopback-any-port"),
        pytest.param("http://127.0.0.1:1/callback", id="loopback-port-1"),
        pytest.param("http://[::1]:40000/cb", id="loopback-ipv6-any-port"),
    ],
)
def test_redirect_uri_accepted(client, storage, presented):
    app = make_client(storage, redirect_uris=(LOOPBACK, LOOPBACK6, LOCALHOST, HTTPS))
    page = client.get(authorize_url(app, redirect_uri=presented))
    assert page.status_code == 200, page.text
    assert 'name="password"' in page.text


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param(LOOPBACK + "/", id="trailing-slash"),
        pytest.param("http://127.0.0.1:9999/callbac", id="other-path"),
        pytest.param("http://127.0.0.1:9999/callback/evil", id="sub-path"),
        pytest.param("http://127.0.0.1:9999/CALLBACK", id="path-case"),
        pytest.param(LOOPBACK + "?x=1", id="query-added"),
        pytest.param(LOOPBACK + "?", id="empty-query-added"),
        pytest.param(LOOPBACK + "#", id="empty-fragment-added"),
        pytest.param(LOOPBACK + "#frag", id="fragment-added"),
        pytest.param("http://127.0.0.2:9999/callback", id="other-loopback-host"),
        pytest.param("https://127.0.0.1:9999/callback", id="other-scheme"),
        pytest.param("http://evil@127.0.0.1:9999/callback", id="userinfo"),
        pytest.param("http://127.0.0.1:0/callback", id="port-zero"),
        pytest.param("http://127.0.0.1:99999/callback", id="port-out-of-range"),
        pytest.param("http://127.0.0.1:/callback", id="empty-port"),
        pytest.param("http://localhost:1234/cb", id="localhost-other-port"),
        pytest.param("https://app.example.com:8443/cb", id="https-other-port"),
        pytest.param("https://app.example.com:443/cb", id="https-explicit-port"),
        pytest.param("http://app.example.com/cb", id="https-downgraded"),
        pytest.param("https://evil.example.com/cb", id="other-host"),
        pytest.param("https://app.example.com.evil.com/cb", id="suffix-host"),
        pytest.param("https://app.example.com/cb/../cb", id="dot-segments"),
        pytest.param("https://app.example.com/c%62", id="percent-encoded"),
        pytest.param("", id="empty"),
    ],
)
def test_redirect_uri_refused_with_an_error_page(client, storage, presented):
    """RFC 6749 §4.1.2.1: a bad redirect URI is never redirected to."""
    app = make_client(storage, redirect_uris=(LOOPBACK, LOOPBACK6, LOCALHOST, HTTPS))
    page = client.get(authorize_url(app, redirect_uri=presented))
    assert page.status_code == 400, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "location" not in page.headers
    assert "invalid_request" in page.text


def test_missing_redirect_uri_uses_the_only_registered_one(client, confidential):
    page = client.get(authorize_url(confidential, redirect_uri=None))
    assert page.status_code == 200, page.text


def test_missing_redirect_uri_with_several_registered_is_an_error_page(client, storage):
    app = make_client(storage, redirect_uris=(LOOPBACK, HTTPS))
    page = client.get(authorize_url(app, redirect_uri=None))
    assert page.status_code == 400
    assert "location" not in page.headers
