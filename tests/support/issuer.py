"""The issuer's tests' helpers: token requests, the authorization pages driven like a
browser, PKCE pairs, independent JWT verification (PyJWT against the served JWKS), and fresh
apps for configs that differ from the default one."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config
from gateway.models import User
from tests.support.app import ISSUER, PASSWORD, Registered

REDIRECT_URI = "http://127.0.0.1:9999/callback"
TOKEN = "/oauth/token"
AUTHORIZE = "/oauth/authorize"
REVOKE = "/oauth/revoke"
INTROSPECT = "/oauth/introspect"
JWKS = "/.well-known/jwks.json"
METADATA = "/.well-known/oauth-authorization-server"


# --- token endpoint --------------------------------------------------------------------------


def token_request(client: TestClient, registered: Registered | None, **form: str) -> httpx.Response:
    """POST /oauth/token, authenticating as the client registered with (Basic for a confidential
    client, client_id in the form for a public one)."""
    auth = None
    if registered is not None:
        if registered.client_secret:
            auth = registered.auth
        else:
            form.setdefault("client_id", registered.client_id)
    return client.post(TOKEN, data=form, auth=auth)


def password_grant(
    client: TestClient,
    registered: Registered,
    email: str = "alice@example.com",
    password: str = PASSWORD,
    **extra: str,
) -> httpx.Response:
    return token_request(
        client, registered, grant_type="password", username=email, password=password, **extra
    )


def tokens(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Assert an RFC 6749 §5.2 JSON error and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    return body


def refresh(client: TestClient, registered: Registered, token: str, **extra: str) -> httpx.Response:
    return token_request(
        client, registered, grant_type="refresh_token", refresh_token=token, **extra
    )


# --- introspection and revocation -------------------------------------------------------------


def introspect(client: TestClient, resource_server: Registered, token: str) -> dict[str, Any]:
    response = client.post(INTROSPECT, data={"token": token}, auth=resource_server.auth)
    assert response.status_code == 200, response.text
    return response.json()


def is_active(client: TestClient, resource_server: Registered, token: str) -> bool:
    return bool(introspect(client, resource_server, token)["active"])


def revoke(client: TestClient, registered: Registered, token: str, **extra: str) -> httpx.Response:
    form = {"token": token, **extra}
    auth = registered.auth if registered.client_secret else None
    if not registered.client_secret:
        form["client_id"] = registered.client_id
    return client.post(REVOKE, data=form, auth=auth)


# --- PKCE --------------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636 §4.1-4.2, computed here, not by Authlib."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- the authorization pages, driven like a browser --------------------------------------------


def authorize_url(registered: Registered, **params: str | None) -> str:
    query = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "state": "xyz",
        **params,
    }
    return AUTHORIZE + "?" + urlencode({k: v for k, v in query.items() if v is not None})


def csrf_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def login(client: TestClient, url: str, email: str, password: str = PASSWORD) -> httpx.Response:
    """GET the login form and POST it; returns the POST's response."""
    page = client.get(url)
    assert page.status_code == 200, page.text
    assert 'name="password"' in page.text
    form = {"action": "login", "email": email, "password": password, "csrf_token": csrf_token(page)}
    return client.post(url, data=form)


def consent(client: TestClient, url: str, action: str = "allow") -> httpx.Response:
    """GET the consent page and POST the decision; returns the redirect to the client."""
    page = client.get(url)
    assert page.status_code == 200, page.text
    assert 'value="allow"' in page.text, page.text
    return client.post(url, data={"action": action, "csrf_token": csrf_token(page)})


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    parts = urlsplit(location)
    params = parse_qs(parts.query)
    assert all(len(v) == 1 for v in params.values()), location
    return {k: v[0] for k, v in params.items()}


def get_code(
    client: TestClient,
    registered: Registered,
    user: User,
    *,
    challenge: str | None = None,
    **params: str | None,
) -> str:
    """Log in as ``user``, allow, and return the code from the redirect."""
    if challenge is not None:
        params = {"code_challenge": challenge, "code_challenge_method": "S256", **params}
    url = authorize_url(registered, **params)
    page = client.get(url)
    if 'name="password"' in page.text:  # not signed in yet
        posted = login(client, url, user.email)
        assert posted.status_code == 303, posted.text
        page = client.get(url)
    # consent remembered (or a first-party client): the code comes at once
    response = page if page.status_code == 302 else consent(client, url)
    result = redirect_params(response)
    assert result["iss"] == ISSUER
    return result["code"]


def redeem(
    client: TestClient,
    registered: Registered,
    code: str,
    verifier: str | None = None,
    redirect_uri: str | None = REDIRECT_URI,
) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        form["redirect_uri"] = redirect_uri
    if verifier is not None:
        form["code_verifier"] = verifier
    return token_request(client, registered, **form)


# --- independent verification ------------------------------------------------------------------


def decode(client: TestClient, access_token: str, audience: str = ISSUER) -> dict[str, Any]:
    """Verify with PyJWT against the JWKS the gateway serves, as a third party would."""
    jwks = client.get(JWKS).json()
    kid = jwt.get_unverified_header(access_token)["kid"]
    matching = [k for k in jwks["keys"] if k["kid"] == kid]
    assert len(matching) == 1, (kid, jwks)
    key = jwt.PyJWK(matching[0])
    return jwt.decode(
        access_token,
        key=key,
        algorithms=[matching[0]["alg"]],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )


def header(access_token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(access_token)


# --- apps for other configs ---------------------------------------------------------------------


@contextlib.contextmanager
def running(config: Config, **kwargs: Any) -> Iterator[TestClient]:
    """A second app on the same database and keys (e.g. with other token lifetimes)."""
    with TestClient(
        create_app(config), base_url=ISSUER, follow_redirects=False, **kwargs
    ) as test_client:
        yield test_client


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)


def config_toml(config: Config, path: Path, **keys: Any) -> Path:
    """Write ``config``'s essentials as the TOML file the CLI reads."""
    lines = [
        f'issuer = "{config.issuer}"',
        "[database]",
        f'url = "{config.database_url}"',
        "[keys]",
        f'dir = "{config.keys_dir}"',
        f'algorithm = "{config.keys.algorithm}"',
    ]
    for name, value in keys.items():
        rendered = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{name} = {rendered}")
    path.write_text("\n".join(lines) + "\n")
    return path
