"""Fuzzing the issuer (RFC 6749, 7009, 7662): whatever a client sends to the token,
revocation, introspection and authorization endpoints, or to any other path the gateway owns,

- the status is below 500;
- an error is RFC 6749 §5.2 JSON (an HTML error page or a redirect at the authorization
  endpoint, §4.1.2.1) with one of the RFCs' error codes;
- a rejected request changes no row of any table;
- no response contains a secret, password or token the world was seeded with.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gateway.issuer.session import COOKIE
from gateway.storage import Storage
from tests.support.app import PASSWORD
from tests.support.fuzz import World, row_counts, seed
from tests.support.issuer import AUTHORIZE, INTROSPECT, REDIRECT_URI, REVOKE, TOKEN, csrf_token
from tests.support.strategies import (
    CONTENT_TYPES,
    METHODS,
    authorizations,
    cookies,
    encoded,
    form_bodies,
    header_text,
    junk,
    pairs,
    values,
)

pytestmark = pytest.mark.fuzz

#: RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1; RFC 7662 adds none. ``not_found`` is the
#: gateway's own 404 for a path below /oauth or /.well-known that names no endpoint.
ERROR_CODES = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "temporarily_unavailable",
    "unsupported_token_type",
    "not_found",
}
OTHER_PATHS = (
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
    "/.well-known/",
    "/.well-known/openid-configuration",
    "/oauth",
    "/oauth/",
    "/oauth/userinfo",
    "/healthz",
    "/readyz",
    "/metrics",
    TOKEN,
    REVOKE,
    INTROSPECT,
    AUTHORIZE,
)


@pytest.fixture
def world(storage: Storage, client: TestClient) -> World:
    return seed(storage, client)


def latin1(headers: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode("latin-1"): v.encode("latin-1") for k, v in headers.items()}


def assert_no_secret(response: httpx.Response, world: World) -> None:
    seen = response.content + b"".join(v for _, v in response.headers.raw)
    for secret in world.secrets:
        assert secret.encode() not in seen, f"the response echoes {secret[:12]}..."


def assert_json_error(response: httpx.Response) -> None:
    if response.request.method == "HEAD":  # RFC 9110 §9.3.2: the headers a GET would get
        assert response.content == b""
        return
    assert response.headers.get("content-type", "").startswith("application/json"), response
    body = response.json()
    assert body["error"] in ERROR_CODES, body
    assert isinstance(body.get("error_description", ""), str), body


def check_endpoint_response(
    response: httpx.Response, world: World, before: dict[str, int], storage: Storage
) -> None:
    assert response.status_code < 500, response.text
    assert_no_secret(response, world)
    if response.status_code >= 400:
        assert_json_error(response)
        assert row_counts(storage) == before
        if response.status_code == 401:
            assert response.headers["www-authenticate"].startswith("Basic"), response.headers


# --- token, revocation, introspection -----------------------------------------------------------


@st.composite
def endpoint_requests(draw: st.DrawFn, world: World) -> dict[str, Any]:
    """A request to one of the JSON endpoints. A request with a client's real credentials
    carries no seeded token: refreshing with the seeded refresh token would rotate it, and a
    later replay is, by design, rejected *and* revokes the grant."""
    ids = (world.confidential.client_id, world.resource_server.client_id, world.public.client_id)
    real_pairs = (world.confidential.auth, world.resource_server.auth)
    authorization = draw(
        st.one_of(
            st.none(),
            authorizations(ids, world.secrets),
            st.sampled_from(real_pairs).map(lambda pair: ("real", pair)),
        )
    )
    real = isinstance(authorization, tuple)
    known = ids if real else (*ids, *world.secrets)
    headers = {}
    content_type = draw(st.one_of(st.sampled_from(CONTENT_TYPES), header_text))
    if content_type:
        headers["content-type"] = content_type
    if isinstance(authorization, str):
        headers["authorization"] = authorization
    if draw(st.booleans()):
        headers["cookie"] = draw(cookies(COOKIE))
    query = draw(st.one_of(st.just(""), pairs(*known).map(encoded)))
    return {
        "method": draw(st.sampled_from(("POST", "POST", "POST", *METHODS))),
        "url": draw(st.sampled_from((TOKEN, REVOKE, INTROSPECT))) + ("?" + query if query else ""),
        "content": draw(form_bodies(*known)),
        "headers": latin1(headers),
        "auth": authorization[1] if real else None,
    }


def test_token_revocation_introspection(client: TestClient, storage: Storage, world: World) -> None:
    @given(request=endpoint_requests(world))
    def send(request: dict[str, Any]) -> None:
        before = row_counts(storage)
        response = client.request(**request)
        check_endpoint_response(response, world, before, storage)

    send()


# --- the authorization endpoint, GET and POST ----------------------------------------------------


@st.composite
def authorization_requests(draw: st.DrawFn, world: World, csrf: str) -> dict[str, Any]:
    """GET or POST /oauth/authorize: a query that is valid in parts, and for POST a login,
    consent or logout form whose CSRF token is the page's, missing or wrong."""
    ids = (world.confidential.client_id, world.public.client_id)
    params = {
        "response_type": st.sampled_from(("code", "token", "")),
        "client_id": st.sampled_from(ids),
        "redirect_uri": st.sampled_from((REDIRECT_URI, REDIRECT_URI + "/x", "http://evil.test/")),
        "state": values(),
        "scope": values(),
        "code_challenge": st.sampled_from(("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "x")),
        "code_challenge_method": st.sampled_from(("S256", "plain")),
    }
    query = [(name, draw(value)) for name, value in params.items() if draw(st.booleans())]
    query += draw(pairs(*ids))
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["cookie"] = draw(cookies(COOKIE))
    method = draw(st.sampled_from(("GET", "POST", "POST")))
    content = b""
    if method == "POST":
        fields = {
            "action": st.sampled_from(("login", "allow", "deny", "logout", "")) | junk,
            "csrf_token": st.sampled_from((csrf, csrf[:-1], "")) | junk,
            # the email field is shown again on a failed login, as every login form does
            "email": st.sampled_from((world.email, "")) | junk,
            "password": st.sampled_from((PASSWORD, *world.secrets)) | junk,
        }
        form = [(name, draw(value)) for name, value in fields.items() if draw(st.booleans())]
        content = draw(st.one_of(st.just(encoded(form).encode()), form_bodies()))
        headers["content-type"] = draw(st.sampled_from(CONTENT_TYPES))
    return {
        "method": method,
        "url": AUTHORIZE + "?" + encoded(query),
        "content": content,
        "headers": latin1(headers),
    }


def check_authorization_response(
    response: httpx.Response, world: World, before: dict[str, int], storage: Storage
) -> None:
    assert response.status_code < 500, response.text
    assert_no_secret(response, world)
    status = response.status_code
    if status == 302:  # back to the client: a code, or an error with its code (§4.1.2.1)
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI + "?"), location
        params = parse_qs(urlsplit(location).query)
        if "code" in params:
            return
        assert params["error"][0] in ERROR_CODES, location
    elif status == 400:  # an error page: the client or redirect URI cannot be trusted
        assert response.headers["content-type"].startswith("text/html")
        assert "location" not in response.headers
        codes = set(re.findall(r"[a-z_]+", response.text)) & ERROR_CODES
        assert codes, response.text
    else:  # the login or consent page (401: a failed login), or post/redirect/get (303)
        assert status in (200, 303, 401), response.text
    assert row_counts(storage) == before


def test_authorization_endpoint(client: TestClient, storage: Storage, world: World) -> None:
    page = client.get(
        AUTHORIZE + f"?response_type=code&client_id={world.confidential.client_id}"
        f"&redirect_uri={REDIRECT_URI}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        "&code_challenge_method=S256"
    )
    csrf = csrf_token(page)

    @given(request=authorization_requests(world, csrf))
    def send(request: dict[str, Any]) -> None:
        before = row_counts(storage)
        response = client.request(**request)
        check_authorization_response(response, world, before, storage)

    send()


# --- every other path and method -----------------------------------------------------------------


@st.composite
def other_requests(draw: st.DrawFn, world: World) -> dict[str, Any]:
    path = draw(
        st.one_of(
            st.sampled_from(OTHER_PATHS),
            st.sampled_from(("/oauth/", "/.well-known/")).map(
                lambda p: p + quote(draw(junk), safe="/%.;")
            ),
        )
    )
    headers = {
        name: draw(header_text)
        for name in ("accept", "authorization", "cookie", "x-forwarded-for", "host")
        if draw(st.booleans())
    }
    if draw(st.booleans()):
        headers["authorization"] = draw(
            authorizations((world.confidential.client_id,), world.secrets)
        )
    return {
        "method": draw(st.sampled_from(METHODS)),
        "url": path + "?" + draw(pairs(*world.secrets).map(encoded)),
        "content": draw(form_bodies(*world.secrets)),
        "headers": latin1(headers),
    }


def test_every_other_endpoint(client: TestClient, storage: Storage, world: World) -> None:
    @given(request=other_requests(world))
    def send(request: dict[str, Any]) -> None:
        before = row_counts(storage)
        response = client.request(**request)
        assert response.status_code < 500, response.text
        assert_no_secret(response, world)
        if response.status_code >= 400 and request["url"].split("?")[0] != AUTHORIZE:
            assert_json_error(response)
        if response.status_code >= 300:
            assert row_counts(storage) == before

    send()
