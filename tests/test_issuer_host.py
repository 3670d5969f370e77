"""The start-up warning about routes served on the issuer's host (issue 15 §3): their pages
would share an origin with the login and consent pages."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from gateway.app import create_app
from gateway.config import Config, RouteConfig
from gateway.issuer_host import routes_on_issuer_host
from gateway.storage import Storage

ISSUER = "https://auth.example.com"
UPSTREAM = "http://127.0.0.1:9"


def route(name: str, host: str | None = None) -> RouteConfig:
    return RouteConfig(path=f"/{name}", upstream=UPSTREAM, name=name, host=host, public=True)


@pytest.mark.parametrize(
    ("host", "shared"),
    [
        pytest.param(None, True, id="every-host"),
        pytest.param("auth.example.com", True, id="the-issuers"),
        pytest.param("AUTH.Example.COM", True, id="the-issuers-other-case"),
        pytest.param("auth.example.com.", True, id="the-issuers-trailing-dot"),
        pytest.param("auth.example.com:443", True, id="the-issuers-with-a-port"),
        pytest.param("auth.example.com:8443", True, id="the-issuers-other-port"),
        pytest.param("api.example.com", False, id="another"),
        pytest.param("example.com", False, id="the-parent"),
        pytest.param("x.auth.example.com", False, id="a-child"),
        pytest.param("auth.example.comx", False, id="longer"),
        pytest.param("[bad", False, id="not-a-host"),
    ],
)
def test_which_routes_serve_the_issuers_host(config: Config, host: str | None, shared: bool):
    changed = dataclasses.replace(config, issuer=ISSUER, routes=(route("r", host),))
    assert routes_on_issuer_host(changed) == (["r"] if shared else [])


def test_an_ip_issuer(config: Config):
    routes = (route("same", "127.0.0.1:9000"), route("other", "127.0.0.2"))
    issuer = dataclasses.replace(config, issuer="http://127.0.0.1:8000", routes=routes)
    assert routes_on_issuer_host(issuer) == ["same"]


def test_one_warning_at_start_names_them(
    config: Config, storage: Storage, caplog: pytest.LogCaptureFixture
):
    routes = (route("pub"), route("api", "api.example.com"), route("own", "auth.example.com"))
    with caplog.at_level(logging.WARNING, logger="gateway"):
        app = create_app(dataclasses.replace(config, issuer=ISSUER, routes=routes))
    app.gateway.storage.dispose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "issuer's host (auth.example.com): pub, own." in warnings[0]
    assert "host of its own" in warnings[0]


def test_no_warning_when_the_issuer_has_a_host_of_its_own(
    config: Config, storage: Storage, caplog: pytest.LogCaptureFixture
):
    routes = (route("api", "api.example.com"),)
    with caplog.at_level(logging.WARNING, logger="gateway"):
        app = create_app(dataclasses.replace(config, issuer=ISSUER, routes=routes))
    app.gateway.storage.dispose()
    assert [r for r in caplog.records if "issuer's host" in r.getMessage()] == []
