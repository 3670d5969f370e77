"""Pushed authorization requests (RFC 9126): the push at ``POST /oauth/par`` (§2), its
redemption at ``/oauth/authorize`` (§4), through the login and consent pages to a code and a
token."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from gateway.config import ParConfig
from gateway.models import Client, PushedRequest, sha256
from gateway.storage import Storage
from tests.support.app import ISSUER, Registered, make_client
from tests.support.issuer import (
    METADATA,
    REDIRECT_URI,
    authorize_url,
    consent,
    csrf_token,
    decode,
    oauth_error,
    pkce_pair,
    redeem,
    redirect_params,
    running,
    tokens,
)
from tests.support.par import (
    PAR,
    URN,
    authorize_pushed,
    continue_at,
    push,
    pushed,
    signed_in_at,
)


def rows(storage: Storage) -> list[PushedRequest]:
    with storage.session() as session:
        return list(session.scalars(sa.select(PushedRequest)))


def refused_page(response, description: str = "request_uri") -> None:
    """``invalid_request`` on the error page: no redirect to an untrusted redirect URI."""
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "invalid_request" in response.text
    assert description in response.text


# --- §2: the push --------------------------------------------------------------------------------


def test_push_answers_201_with_a_one_time_request_uri(client, storage, confidential):
    response = push(client, confidential, scope="orders:read", nonce="n-1")

    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"request_uri", "expires_in"}
    assert body["expires_in"] == 60
    assert body["request_uri"].startswith(URN)
    reference = body["request_uri"].removeprefix(URN)
    assert len(reference) >= 43  # 256 bits, base64url
    (row,) = rows(storage)
    assert row.request_uri_hash == sha256(reference)  # the hash only
    assert reference not in str(row.parameters) and row.client_id == confidential.client_id
    assert row.parameters == {
        "response_type": ["code"],
        "client_id": [confidential.client_id],
        "redirect_uri": [REDIRECT_URI],
        "state": ["xyz"],
        "scope": ["orders:read"],
        "nonce": ["n-1"],
    }
    assert row.used_at is None and row.expires_at > row.created_at


def test_request_lifetime_is_the_configured_one(config, storage, confidential):
    changed = dataclasses.replace(config, par=ParConfig(request_lifetime=17))
    with running(changed) as other:
        body = push(other, confidential).json()
    assert body["expires_in"] == 17
    (row,) = rows(storage)
    assert row.expires_at - row.created_at == pytest.approx(17)


def test_client_secret_post_credentials_are_not_stored(client, storage, poster):
    response = push(client, dataclasses.replace(poster, client_secret=None), client_secret="x")
    oauth_error(response, 401, "invalid_client")
    form = {"client_secret": poster.client_secret or ""}
    assert push(client, dataclasses.replace(poster, client_secret=None), **form).status_code == 201
    (row,) = rows(storage)
    assert "client_secret" not in row.parameters


def test_a_public_client_pushes_with_its_client_id(client, storage, public):
    _, challenge = pkce_pair()
    response = push(client, public, code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param({"redirect_uri": "http://127.0.0.1:9999/other"}, "invalid_request", id="uri"),
        pytest.param({"scope": "orders:admin"}, "invalid_scope", id="scope"),
        pytest.param({"scope": ""}, "invalid_scope", id="empty-scope"),
        pytest.param({"resource": "https://nowhere.example/"}, "invalid_target", id="resource"),
        pytest.param({"resource": "not-absolute"}, "invalid_target", id="resource-relative"),
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="token"),
        pytest.param({"response_type": None}, "unsupported_response_type", id="no-type"),
        pytest.param(
            {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
            "invalid_request",
            id="pkce-plain",
        ),
        pytest.param({"code_challenge": "x" * 43}, "invalid_request", id="pkce-no-method"),
        pytest.param({"prompt": "select_account"}, "invalid_request", id="prompt"),
        pytest.param({"max_age": "soon"}, "invalid_request", id="max-age"),
        pytest.param({"nonce": "n" * 1000}, "invalid_request", id="nonce-long"),
        pytest.param({"response_mode": "form_post"}, "invalid_request", id="response-mode"),
        pytest.param({"request_uri": URN + "abc"}, "invalid_request", id="request-uri"),
        pytest.param({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported", id="jar"),
        pytest.param({"registration": "{}"}, "registration_not_supported", id="registration"),
        pytest.param({"client_id": None}, "invalid_request", id="no-client-id"),
        pytest.param({"state": "caf\u00e9"}, "invalid_request", id="state-syntax"),
    ],
)
def test_a_bad_push_is_a_json_error_never_a_redirect(client, storage, confidential, params, error):
    """§2.3: the authorization request's errors, as the token endpoint answers them."""
    response = push(client, confidential, **params)
    body = oauth_error(response, 400, error)
    assert "location" not in response.headers
    assert "state" not in body
    assert rows(storage) == []


def test_a_public_client_without_pkce_is_refused(client, storage, public):
    oauth_error(push(client, public), 400, "invalid_request")
    assert rows(storage) == []


def test_a_repeated_parameter_is_refused(client, confidential):
    form = [
        ("response_type", "code"),
        ("client_id", confidential.client_id),
        ("scope", "orders:read"),
        ("scope", "profile"),
    ]
    body = "&".join(f"{k}={v}" for k, v in form)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = client.post(PAR, content=body, headers=headers, auth=confidential.auth)
    oauth_error(response, 400, "invalid_request")


def test_only_a_form_body_is_read(client, confidential):
    response = client.post(
        PAR, json={"response_type": "code", "client_id": confidential.client_id},
        auth=confidential.auth,
    )  # fmt: skip
    oauth_error(response, 400, "invalid_request")
    # the query string is not the request: without a body there is none
    query = f"{PAR}?response_type=code&client_id={confidential.client_id}"
    response = client.post(query, data={"client_id": confidential.client_id},
                           auth=confidential.auth)  # fmt: skip
    oauth_error(response, 400, "unsupported_response_type")


def test_get_is_not_allowed(client):
    assert client.get(PAR).status_code == 405


# --- §2: client authentication as at the token endpoint ----------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("unknown-client", id="unknown-client"),
        pytest.param("none", id="no-credentials"),
        pytest.param("public-as-confidential", id="confidential-without-secret"),
    ],
)
def test_client_authentication_failures_are_401(client, storage, confidential, auth):
    form = {"response_type": "code", "client_id": confidential.client_id}
    credentials: tuple[str, str] | None = None
    if auth == "wrong-secret":
        credentials = (confidential.client_id, "not-the-secret")
    elif auth == "unknown-client":
        credentials = ("no-such-client", "secret")
        form["client_id"] = "no-such-client"
    elif auth == "none":
        form.pop("client_id")
    response = client.post(PAR, data=form, auth=credentials)
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")
    assert rows(storage) == []


def test_two_clients_at_once_are_refused(client, storage, confidential):
    other = make_client(storage, name="Other")
    response = client.post(
        PAR,
        data={"response_type": "code", "client_id": other.client_id},
        auth=confidential.auth,
    )
    oauth_error(response, 400, "invalid_request")


# --- §4: the redemption, through the pages to a token --------------------------------------------


def test_pushed_request_end_to_end_with_pkce(client, storage, user, public):
    verifier, challenge = pkce_pair()
    request_uri = pushed(
        client,
        public,
        scope="orders:read",
        code_challenge=challenge,
        code_challenge_method="S256",
        state="st-9",
        nonce="nonce-9",
    )
    continuation = continue_at(client, authorize_pushed(public, request_uri))
    query = parse_qs(urlsplit(continuation).query)
    assert query["client_id"] == [public.client_id]
    assert query["request_uri"][0].startswith(URN) and query["request_uri"][0] != request_uri
    page = client.get(continuation)
    assert 'name="password"' in page.text
    signed_in_at(client, continuation, user.email)
    answer = consent(client, continuation)
    back = redirect_params(answer)
    assert answer.headers["location"].startswith(REDIRECT_URI + "?")
    assert (back["state"], back["iss"]) == ("st-9", ISSUER)
    issued = tokens(redeem(client, public, back["code"], verifier))
    claims = decode(client, issued["access_token"])
    assert claims["scope"] == "orders:read" and claims["client_id"] == public.client_id
    assert rows(storage) == []  # answered: nothing left to redeem


def test_a_confidential_client_gets_its_code(client, user, confidential):
    request_uri = pushed(client, confidential, scope="profile")
    continuation = continue_at(client, authorize_pushed(confidential, request_uri))
    signed_in_at(client, continuation, user.email)
    back = redirect_params(consent(client, continuation))
    issued = tokens(redeem(client, confidential, back["code"]))
    assert decode(client, issued["access_token"])["scope"] == "profile"


def test_other_parameters_on_the_authorization_request_are_ignored(client, user, confidential):
    """§4: "the authorization server ... MUST ignore any other parameters" than client_id and
    request_uri: neither the first URL nor the continuation's can change the request."""
    request_uri = pushed(client, confidential, scope="orders:read", state="pushed")
    elsewhere = {
        "redirect_uri": "http://127.0.0.1:9999/elsewhere",
        "scope": "orders:write",
        "state": "query",
        "response_type": "token",
        "prompt": "none",
    }
    url = authorize_pushed(confidential, request_uri, **elsewhere)
    continuation = continue_at(client, url)
    assert "elsewhere" not in continuation and "orders" not in continuation
    tampered = continuation + "&scope=orders%3Awrite&redirect_uri=http%3A%2F%2Fevil.example%2F"
    signed_in_at(client, tampered, user.email)
    page = client.get(tampered)
    assert 'data-scope="orders:read"' in page.text and "orders:write" not in page.text
    answer = client.post(tampered, data={"action": "allow", "csrf_token": csrf_token(page)})
    assert answer.headers["location"].startswith(REDIRECT_URI + "?")
    back = redirect_params(answer)
    assert back["state"] == "pushed"
    issued = tokens(redeem(client, confidential, back["code"]))
    assert decode(client, issued["access_token"])["scope"] == "orders:read"


def test_a_request_uri_is_redeemed_once(client, storage, confidential):
    url = authorize_pushed(confidential, pushed(client, confidential))
    continue_at(client, url)
    refused_page(client.get(url))
    (row,) = rows(storage)
    assert row.used_at is not None


def test_the_continuation_gives_one_answer(client, user, confidential):
    """The code comes once: the continuation is gone with the answer, even for a form posted
    twice."""
    continuation = continue_at(client, authorize_pushed(confidential, pushed(client, confidential)))
    signed_in_at(client, continuation, user.email)
    page = client.get(continuation)
    form = {"action": "allow", "csrf_token": csrf_token(page)}
    assert "code" in redirect_params(client.post(continuation, data=form))
    refused_page(client.post(continuation, data=form))
    refused_page(client.get(continuation))


def test_a_denial_also_ends_the_request(client, user, confidential):
    continuation = continue_at(client, authorize_pushed(confidential, pushed(client, confidential)))
    signed_in_at(client, continuation, user.email)
    back = redirect_params(consent(client, continuation, action="deny"))
    assert back["error"] == "access_denied"
    refused_page(client.get(continuation))


def test_an_expired_request_uri_is_refused(client, storage, confidential):
    url = authorize_pushed(confidential, pushed(client, confidential))
    with storage.session() as session:
        session.execute(sa.update(PushedRequest).values(expires_at=PushedRequest.created_at - 1))
    refused_page(client.get(url))


def test_an_expired_continuation_is_refused(client, storage, user, confidential):
    continuation = continue_at(client, authorize_pushed(confidential, pushed(client, confidential)))
    with storage.session() as session:
        session.execute(sa.update(PushedRequest).values(expires_at=PushedRequest.used_at - 1))
    refused_page(client.get(continuation))


def test_another_clients_request_uri_is_refused_and_not_used_up(client, storage, confidential):
    other = make_client(storage, name="Other")
    request_uri = pushed(client, confidential)
    refused_page(client.get(authorize_pushed(other, request_uri)))
    refused_page(client.get(authorize_pushed("", request_uri)))
    continue_at(client, authorize_pushed(confidential, request_uri))


@pytest.mark.parametrize(
    "request_uri",
    [
        pytest.param("https://rp.example/r", id="not-ours"),
        pytest.param(URN, id="empty-reference"),
        pytest.param(URN + "A" * 43, id="unknown"),
        pytest.param(URN + "A" * 200, id="too-long"),
        pytest.param(URN + "a/b", id="not-base64url"),
    ],
)
def test_a_request_uri_not_pushed_is_refused(client, confidential, request_uri):
    refused_page(client.get(authorize_pushed(confidential, request_uri, state="s")))


def test_a_signed_in_user_with_remembered_consent_gets_the_code_at_once(
    client, storage, user, confidential
):
    first = continue_at(client, authorize_pushed(confidential, pushed(client, confidential)))
    signed_in_at(client, first, user.email)
    assert "code" in redirect_params(consent(client, first))
    # a second pushed request for the same scopes: no page at all
    continuation = continue_at(client, authorize_pushed(confidential, pushed(client, confidential)))
    assert "code" in redirect_params(client.get(continuation))
    assert rows(storage) == []


def test_prompt_none_is_answered_once_too(client, user, confidential):
    request_uri = pushed(client, confidential, prompt="none")
    continuation = continue_at(client, authorize_pushed(confidential, request_uri))
    assert redirect_params(client.get(continuation))["error"] == "login_required"
    refused_page(client.get(continuation))


# --- §5 and the per-client setting: requests that must be pushed ---------------------------------


def require_par(storage: Storage, registered: Registered) -> None:
    with storage.session() as session:
        session.execute(
            sa.update(Client)
            .where(Client.client_id == registered.client_id)
            .values(require_par=True)
        )


def test_par_required_refuses_a_plain_request(config, storage, user, confidential):
    with running(dataclasses.replace(config, par=ParConfig(required=True))) as strict:
        refused_page(strict.get(authorize_url(confidential)), "pushed authorization request")
        assert strict.get(METADATA).json()["require_pushed_authorization_requests"] is True
        continuation = continue_at(
            strict, authorize_pushed(confidential, pushed(strict, confidential))
        )
        signed_in_at(strict, continuation, user.email)
        assert "code" in redirect_params(consent(strict, continuation))


def test_a_client_registered_with_require_par_must_push(client, storage, user, confidential):
    other = make_client(storage, name="Other")
    require_par(storage, confidential)
    refused_page(client.get(authorize_url(confidential)), "pushed authorization request")
    assert client.get(authorize_url(other)).status_code == 200  # the others need not
    continue_at(client, authorize_pushed(confidential, pushed(client, confidential)))


def test_discovery_names_the_endpoint(client):
    for path in (METADATA, "/.well-known/openid-configuration"):
        metadata = client.get(path).json()
        assert metadata["pushed_authorization_request_endpoint"] == f"{ISSUER}/oauth/par"
        assert metadata["require_pushed_authorization_requests"] is False
