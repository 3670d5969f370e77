"""RFC 6749 §2.3: one client authentication method per request, and a method that fails is
never rescued by another, at the token, revocation and introspection endpoints alike; every
failure reads the same, so the answers never tell an unknown client from a wrong secret."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from gateway.issuer.clientauth import FAILED
from tests.support.app import Registered, make_client
from tests.support.issuer import INTROSPECT, REVOKE, TOKEN, oauth_error

Form = dict[str, str]


def basic(client_id: str, secret: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


@pytest.fixture
def post_client(storage: Any) -> Registered:
    return make_client(storage, name="Post app", auth_method="client_secret_post", scope="")


@pytest.fixture
def introspector(storage: Any) -> Registered:
    """May introspect; authenticates in the body (client_secret_post)."""
    return make_client(
        storage,
        name="Post resource server",
        grant_types=("client_credentials",),
        scope="",
        auth_method="client_secret_post",
        can_introspect=True,
    )


ENDPOINT_FORMS: list[Any] = [
    pytest.param(TOKEN, {"grant_type": "client_credentials"}, id="token"),
    pytest.param(REVOKE, {"token": "x"}, id="revocation"),
    pytest.param(INTROSPECT, {"token": "x"}, id="introspection"),
]


@pytest.mark.parametrize(("endpoint", "form"), ENDPOINT_FORMS)
def test_a_failed_basic_never_falls_through_to_the_body(
    client, confidential, introspector, endpoint, form
):
    """The attack: HTTP Basic with a wrong secret for one client, valid body credentials for
    another. Two methods in one request: refused before either is tried."""
    response = client.post(
        endpoint,
        data={
            **form,
            "client_id": introspector.client_id,
            "client_secret": introspector.client_secret,
        },
        headers=basic(confidential.client_id, "wrong"),
    )
    oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize(("endpoint", "form"), ENDPOINT_FORMS)
def test_two_valid_methods_are_still_two(client, introspector, endpoint, form):
    response = client.post(
        endpoint,
        data={
            **form,
            "client_id": introspector.client_id,
            "client_secret": introspector.client_secret,
        },
        headers=basic(introspector.client_id, introspector.client_secret or ""),
    )
    oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize(("endpoint", "form"), ENDPOINT_FORMS)
def test_a_body_client_id_naming_another_client_than_basic_is_refused(
    client, confidential, introspector, endpoint, form
):
    response = client.post(
        endpoint,
        data={**form, "client_id": introspector.client_id},
        headers=basic(confidential.client_id, confidential.client_secret or ""),
    )
    oauth_error(response, 400, "invalid_request")


def test_a_body_client_id_matching_basic_is_accepted(client, confidential):
    response = client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": confidential.client_id},
        headers=basic(confidential.client_id, confidential.client_secret or ""),
    )
    assert response.status_code == 200, response.text


def failures(confidential: Registered, public: Registered) -> list[Any]:
    """(name, headers, form) of requests whose one method fails."""
    return [
        ("unknown-basic", basic("no-such-client", "secret"), {}),
        ("wrong-secret-basic", basic(confidential.client_id, "wrong"), {}),
        ("empty-secret-basic", basic(confidential.client_id, ""), {}),
        ("unknown-post", {}, {"client_id": "no-such-client", "client_secret": "secret"}),
        ("wrong-secret-post", {}, {"client_id": confidential.client_id, "client_secret": "x"}),
        ("empty-secret-post", {}, {"client_id": confidential.client_id, "client_secret": ""}),
        (
            "unregistered-method-post",
            {},
            {"client_id": confidential.client_id, "client_secret": confidential.client_secret},
        ),
        ("confidential-without-secret", {}, {"client_id": confidential.client_id}),
        ("unknown-public", {}, {"client_id": "no-such-client"}),
        ("public-with-a-secret", {}, {"client_id": public.client_id, "client_secret": "x"}),
        ("bearer-scheme", {"Authorization": "Bearer abc"}, {}),
        ("nothing", {}, {}),
    ]


@pytest.mark.parametrize("endpoint", [TOKEN, REVOKE, INTROSPECT])
def test_every_failure_is_401_with_one_fixed_description(client, confidential, public, endpoint):
    descriptions = set()
    for name, headers, extra in failures(confidential, public):
        form = {"grant_type": "client_credentials", "token": "x", **extra}
        response = client.post(endpoint, data=form, headers=headers)
        body = oauth_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"].startswith("Basic"), name
        descriptions.add(body["error_description"])
    assert descriptions == {FAILED}


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(
            lambda c: ({}, {"client_id": c.client_id, "client_secret": c.client_secret}), id="post"
        ),
        pytest.param(lambda c: (basic(c.client_id, c.client_secret), {}), id="basic"),
    ],
)
def test_the_registered_method_alone_succeeds(
    client, confidential, post_client, send: Callable[[Registered], tuple[Form, Form]]
):
    """Each client's own method works; the other one fails as any failure does."""
    for registered in (confidential, post_client):
        headers, extra = send(registered)
        response = client.post(
            TOKEN, data={"grant_type": "client_credentials", **extra}, headers=headers
        )
        own = (registered is confidential) == ("Authorization" in headers)
        if own:
            assert response.status_code == 200, response.text
        else:
            assert oauth_error(response, 401, "invalid_client")["error_description"] == FAILED


def test_a_public_client_authenticates_by_its_id_alone(client, public):
    """Method ``none``: the refresh grant is a public client's use of it (here: no token, so
    the grant's own error, not the client's)."""
    response = client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": public.client_id},
    )
    oauth_error(response, 400, "invalid_grant")


def test_introspection_takes_no_public_client(client, public):
    response = client.post(INTROSPECT, data={"token": "x", "client_id": public.client_id})
    assert oauth_error(response, 401, "invalid_client")["error_description"] == FAILED
