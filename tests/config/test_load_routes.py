"""Loading routes: the checks ``gateway/config/load.py`` makes of an ``mcp = true`` route."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

ROUTE = """
issuer = "https://issuer.test"
[[routes]]
path = "/mcp"
upstream = "http://127.0.0.1:9001"
scopes = ["mcp:use"]
mcp = true
"""


def test_an_mcp_route_takes_no_method_override(tmp_path: Path) -> None:
    """The upstream would act on another method than the POST whose message was checked."""
    path = tmp_path / "gateway.toml"
    path.write_text(ROUTE + "allow_method_override = true\n")
    with pytest.raises(ConfigError, match=r"routes\[0\]\.allow_method_override"):
        load_config(path)
    path.write_text(ROUTE)
    (route,) = load_config(path).routes
    assert route.mcp and not route.allow_method_override


def test_a_public_route_cannot_be_an_mcp_server(tmp_path: Path) -> None:
    """No token, so no tool could ever be checked (deny by default would refuse them all):
    the start fails rather than serving a route that silently calls no tool."""
    path = tmp_path / "gateway.toml"
    path.write_text(ROUTE.replace('scopes = ["mcp:use"]\n', "public = true\n"))
    with pytest.raises(ConfigError, match=r"routes\[0\]\.mcp: a public route takes no token"):
        load_config(path)
