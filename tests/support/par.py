"""Pushed authorization requests (RFC 9126) as a client makes them, and the authorization
pages driven from a ``request_uri`` like a browser."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.testclient import TestClient

from tests.support.app import Registered
from tests.support.issuer import AUTHORIZE, REDIRECT_URI, login

PAR = "/oauth/par"
URN = "urn:ietf:params:oauth:request_uri:"


def push(client: TestClient, registered: Registered, **params: str | None) -> httpx.Response:
    """POST /oauth/par: an authorization request (``response_type=code``, the redirect URI,
    ``state``, and ``params``; None drops one), authenticated as the client is registered."""
    form = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "state": "xyz",
        **params,
    }
    body = {k: v for k, v in form.items() if v is not None}
    auth = registered.auth if registered.client_secret else None
    return client.post(PAR, data=body, auth=auth)


def pushed(client: TestClient, registered: Registered, **params: str | None) -> str:
    """The ``request_uri`` of an accepted push."""
    response = push(client, registered, **params)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    request_uri: str = body["request_uri"]
    return request_uri


def authorize_pushed(registered: Registered | str, request_uri: str, **extra: str) -> str:
    """``/oauth/authorize?client_id=...&request_uri=...`` (RFC 9126 §4), plus ``extra``."""
    client_id = registered if isinstance(registered, str) else registered.client_id
    return (
        AUTHORIZE + "?" + urlencode({"client_id": client_id, "request_uri": request_uri, **extra})
    )


def continue_at(client: TestClient, url: str) -> str:
    """The first GET of a pushed request: the redirect to its continuation, which it returns."""
    response = client.get(url)
    assert response.status_code == 303, response.text
    location: str = response.headers["location"]
    assert location.startswith(AUTHORIZE + "?")
    return location


def signed_in_at(client: TestClient, url: str, email: str) -> None:
    """Log in on the page at ``url`` (a continuation)."""
    posted = login(client, url, email)
    assert posted.status_code == 303, posted.text
