"""The gateway's own paths never reach the proxy, even under a catch-all route."""

from __future__ import annotations

import dataclasses

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, RouteConfig
from gateway.storage import Storage
from tests.support.app import ISSUER

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens: a request that got through would be 502


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/healthz", 200, id="healthz"),
        pytest.param("GET", "/.well-known/jwks.json", 200, id="jwks"),
        pytest.param("POST", "/oauth/token", 400, id="token"),
        pytest.param("GET", "/metrics", 200, id="metrics"),
        pytest.param("GET", "/oauth", 404, id="prefix-itself"),
        pytest.param("GET", "/healthz/deeper", 404, id="below-an-endpoint"),
    ],
)
def test_own_paths_are_answered_by_the_gateway(
    config: Config, storage: Storage, method: str, path: str, status: int
) -> None:
    catch_all = dataclasses.replace(
        config, routes=(RouteConfig(path="/", upstream=CLOSED_PORT, public=True),)
    )
    with TestClient(create_app(catch_all), base_url=ISSUER) as client:
        response = client.request(method, path)
        assert response.status_code == status, response.text
        assert client.get("/anything/else").status_code == 502  # the proxy's, for contrast


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/oauth/token/", id="token"),
        pytest.param("GET", "/healthz/", id="healthz"),
        pytest.param("GET", "/.well-known/jwks.json/", id="jwks"),
        pytest.param("GET", "/oauth/authorize/", id="authorize"),
    ],
)
def test_a_trailing_slash_is_404_json_never_a_redirect(
    client: TestClient, method: str, path: str
) -> None:
    """Starlette's slash redirect answered 307 to ``http://<the client's Host>/oauth/token``:
    a location built from a header the client chose, downgraded to http."""
    response = client.request(
        method, path, headers={"Host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 404, response.text
    assert "location" not in response.headers
    assert response.json()["error"] == "not_found"
