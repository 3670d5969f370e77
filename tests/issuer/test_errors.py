"""Errors at the issuer are RFC 6749 §5.2 JSON errors with the right code and status, and
hostile input never causes a 500: the token, revocation and introspection endpoints are fed
everything a careless or malicious client could send."""

from __future__ import annotations

import base64

import pytest

from tests.support.issuer import AUTHORIZE, INTROSPECT, REVOKE, TOKEN, authorize_url, oauth_error

FORM = "application/x-www-form-urlencoded"
ENDPOINTS = [TOKEN, REVOKE, INTROSPECT]

#: (content, content type); the client's credentials are sent in HTTP Basic
HOSTILE_BODIES = [
    pytest.param(b'{"grant_type": "client_credentials"}', "application/json", id="json-body"),
    pytest.param(b"grant_type=client_credentials", "text/plain", id="text-plain"),
    pytest.param(b"grant_type=client_credentials", None, id="no-content-type"),
    pytest.param(
        b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
        b"client_credentials\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        id="multipart",
    ),
    pytest.param(b"\x00\xff\xfe garbage", "multipart/form-data; boundary=", id="multipart-broken"),
    pytest.param(b"", FORM, id="empty-body"),
    pytest.param(b"\x00\x01\x02\xff\xfe\xfd" * 100, FORM, id="binary-garbage"),
    pytest.param(b"%ff%fe=%c3%28&token=%e2%82", FORM, id="invalid-utf8-escapes"),
    pytest.param("grant_type=☃&token=☃".encode(), FORM, id="raw-unicode"),
    pytest.param(b"grant_type=" + b"x" * 1_000_000, FORM, id="huge-grant-type"),
    pytest.param(b"token=" + b"x" * 1_000_000, FORM, id="huge-token"),
    pytest.param(b"&".join(b"f%d=v" % i for i in range(1000)), FORM, id="many-fields"),
    pytest.param(
        b"grant_type=client_credentials&grant_type=client_credentials&token=a&token=a",
        FORM,
        id="repeated-params",
    ),
    pytest.param(b"token=a&code=b&refresh_token=c", FORM, id="missing-grant-type"),
    pytest.param(b"grant_type=urn:evil&token=x", FORM, id="unknown-grant-type"),
    pytest.param(b"grant_type=password%00&token=%00", FORM, id="nul-bytes"),
    pytest.param(b"=&==&&=x&x", FORM, id="degenerate-pairs"),
    pytest.param(b"grant_type=refresh_token&refresh_token=", FORM, id="empty-refresh-token"),
    pytest.param(b"grant_type=authorization_code&code=&redirect_uri=", FORM, id="empty-code"),
    pytest.param(
        b"grant_type=password&username=a&password=b&scope=" + b"s " * 10_000,
        FORM,
        id="huge-scope",
    ),
    pytest.param(b"grant_type=client_credentials&scope=%00%01", FORM, id="control-scope"),
    pytest.param(b"grant_type=password&username[]=a&password[]=b", FORM, id="php-arrays"),
    pytest.param("☃=1&☃=2&\x01=a&\x01=b".encode(), FORM, id="repeated-unicode-names"),
    pytest.param(b'grant_type=client_credentials&scope="\\', FORM, id="quote-backslash-scope"),
    pytest.param("grant_type=client_credentials&scope=ünï".encode(), FORM, id="unicode-scope"),
    pytest.param("grant_type=refresh_token&refresh_token=ü".encode(), FORM, id="unicode-refresh"),
    pytest.param(
        "grant_type=authorization_code&code=x&redirect_uri=http://☃".encode(),
        FORM,
        id="unicode-redirect-uri",
    ),
]


def _assert_json_error(response, endpoint: str = TOKEN) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 200 and endpoint != TOKEN:
        # RFC 7009 §2.2 / RFC 7662 §2.2: a token that is not ours is answered, not an error
        assert response.content == b"" or response.json() == {"active": False}
        return
    assert response.status_code >= 400, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert isinstance(response.json()["error"], str)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("content", "content_type"), HOSTILE_BODIES)
def test_hostile_bodies_get_json_errors(client, resource_server, endpoint, content, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(endpoint, content=content, headers=headers, auth=resource_server.auth)
    _assert_json_error(response, endpoint)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic !!!not-base64!!!", id="not-base64"),
        pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), id="no-colon"),
        pytest.param("Basic " + base64.b64encode(b":").decode(), id="empty-pair"),
        pytest.param("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), id="not-utf8"),
        pytest.param("Basic " + base64.b64encode(b"a" * 10_000 + b":b").decode(), id="huge-id"),
        pytest.param("Bearer abc", id="bearer"),
        pytest.param("Basic", id="scheme-only"),
        pytest.param("", id="empty"),
    ],
)
def test_hostile_client_authentication_is_401(client, endpoint, authorization):
    response = client.post(
        endpoint,
        content=b"grant_type=client_credentials&token=abc",
        headers={"content-type": FORM, "authorization": authorization},
    )
    _assert_json_error(response)
    oauth_error(response, 401, "invalid_client")
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    ("form", "error"),
    [
        pytest.param({"token": "x"}, "unsupported_grant_type", id="missing-grant-type"),
        pytest.param({"grant_type": "implicit"}, "unsupported_grant_type", id="implicit"),
        pytest.param({"grant_type": "urn:x"}, "unsupported_grant_type", id="unknown"),
        pytest.param({"grant_type": "authorization_code"}, "invalid_request", id="code-missing"),
        pytest.param({"grant_type": "refresh_token"}, "invalid_request", id="refresh-missing"),
        pytest.param({"grant_type": "password"}, "invalid_request", id="password-missing"),
    ],
)
def test_token_endpoint_error_codes(client, confidential, form, error):
    response = client.post(TOKEN, data=form, auth=confidential.auth)
    oauth_error(response, 400, error)
    assert response.headers["cache-control"] == "no-store"


def test_repeated_parameter_is_invalid_request(client, confidential):
    response = client.post(
        TOKEN,
        content=b"grant_type=client_credentials&scope=profile&scope=orders:read",
        headers={"content-type": FORM},
        auth=confidential.auth,
    )
    body = oauth_error(response, 400, "invalid_request")
    assert body["error_description"] == "A parameter is repeated."  # never named


def test_query_string_parameters_are_not_read(client, confidential):
    """RFC 6749 §3.2: the token request is a POSTed form; the query is not a parameter source."""
    response = client.post(TOKEN + "?grant_type=client_credentials", auth=confidential.auth)
    oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_get_is_405_json(client, endpoint):
    response = client.get(endpoint)
    assert response.status_code == 405
    assert response.json()["error"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="empty"),
        pytest.param("client_id=%ff%fe&redirect_uri=%c3%28", id="invalid-utf8"),
        pytest.param("client_id=" + "x" * 30_000, id="huge"),
        pytest.param("client_id=a&client_id=b", id="repeated"),
        pytest.param("client_id=%00&response_type=code", id="nul"),
        pytest.param("response_type=code&client_id=☃&redirect_uri=javascript:alert(1)", id="js"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_authorize_never_fails_with_500(client, query, method):
    response = client.request(
        method,
        AUTHORIZE + "?" + query,
        content=b"\x00\xff garbage",
        headers={"content-type": FORM},
    )
    assert response.status_code == 400, response.text
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"redirect_uri": "http://127.0.0.1:9999/☃"}, id="unicode-redirect-uri"),
        pytest.param({"redirect_uri": 'http://127.0.0.1:9999/"'}, id="quote-redirect-uri"),
        pytest.param({"redirect_uri": "http://127.0.0.1:9999/\x00"}, id="nul-redirect-uri"),
        pytest.param({"response_type": "cöde"}, id="unicode-response-type"),
        pytest.param({"scope": "ünï"}, id="unicode-scope"),
        pytest.param({"state": "\x00☃"}, id="unicode-state"),
        pytest.param({"code_challenge_method": "S256\x00"}, id="nul-method"),
    ],
)
def test_authorize_refuses_characters_rfc6749_does_not_allow(client, confidential, params):
    """RFC 6749 Appendix A: these parameters are printable ASCII; an error page, no redirect."""
    response = client.get(authorize_url(confidential, **params))
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert "invalid_request" in response.text
