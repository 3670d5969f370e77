"""``gateway edge-config``: the Traefik and Envoy outputs parsed and checked (neither edge is
packaged here; their dialects are tested against ``/decisions`` in tests/proxy), the nginx and
Caddy ones for what the live tests do not see (renamed headers, defaults, an IPv6 address)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main

CONFIG = """
[server]
host = "{host}"
port = 8100

[proxy.identity_headers]
user = "Remote-User"

[proxy.assertion]
header = "X-Identity"

[[routes]]
path = "/orders"
upstream = "http://orders.internal:9001/v1"
"""
NAMES = [
    "Remote-User",
    "X-Forwarded-Email",
    "X-Forwarded-Client-Id",
    "X-Forwarded-Scopes",
    "X-Identity",
]
OVERRIDES = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]


def edge_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, host: str = "0.0.0.0"
) -> str:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(host=host))
    assert main(["--config", str(config), "edge-config", *args]) == 0
    return capsys.readouterr().out


def test_traefik(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    http = yaml.safe_load(edge_config(tmp_path, capsys, "traefik"))["http"]
    auth = http["middlewares"]["gateway"]["forwardAuth"]
    assert auth["address"] == "http://127.0.0.1:8100/decisions"
    assert auth["trustForwardHeader"] is False
    # the gateway sees method overrides, to refuse those a route does not honour, and the
    # DPoP proof (Traefik sets X-Forwarded-Proto itself)
    assert auth["authRequestHeaders"] == ["Authorization", "DPoP", *OVERRIDES]
    assert auth["authResponseHeaders"] == NAMES
    assert http["routers"]["api"]["middlewares"] == ["gateway-strip", "gateway"]
    stripped = http["middlewares"]["gateway-strip"]["headers"]["customRequestHeaders"]
    assert stripped["Remote_User"] == stripped["X_Forwarded_Client-Id"] == ""
    assert "X-Identity" not in stripped and "X_Identity" in stripped
    assert stripped["X_HTTP-Method_Override"] == stripped["X_Method_Override"] == ""
    assert not set(OVERRIDES) & set(stripped)
    # the default upstream: the first route's
    assert http["services"]["api"]["loadBalancer"]["servers"] == [
        {"url": "http://orders.internal:9001/v1"}
    ]
    # RFC 9728 metadata goes to the gateway, undecided, ahead of the catch-all
    metadata = http["routers"]["gateway-metadata"]
    assert metadata["rule"] == (
        "Path(`/.well-known/oauth-protected-resource`) || "
        "PathPrefix(`/.well-known/oauth-protected-resource/`)"
    )
    assert "middlewares" not in metadata and metadata["priority"] > len(
        http["routers"]["api"]["rule"]
    )
    gateway = http["services"][metadata["service"]]["loadBalancer"]
    assert gateway == {"passHostHeader": True, "servers": [{"url": "http://127.0.0.1:8100"}]}


def _find(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [
            found for v in node.values() for found in _find(v, key)
        ]
    if isinstance(node, list):
        return [found for v in node for found in _find(v, key)]
    return []


def test_envoy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = edge_config(
        tmp_path, capsys, "envoy", "--upstream", "http://10.0.0.5:8080", "--listen", "9000"
    )
    bootstrap = yaml.safe_load(out)
    filters = _find(bootstrap, "http_filters")[0]
    assert [f["name"] for f in filters] == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]
    authz = filters[0]["typed_config"]
    assert authz["@type"].endswith("ext_authz.v3.ExtAuthz")
    # Envoy sends an HTTP authorization service only Host, Method, Path, Content-Length,
    # Authorization and these: the gateway must see method overrides to refuse them, and a
    # DPoP proof with the scheme its URL names
    names = ("Authorization", "DPoP", "X-Forwarded-Proto", *OVERRIDES)
    assert authz["allowed_headers"]["patterns"] == [
        {"exact": name.lower(), "ignore_case": True} for name in names
    ]
    service = authz["http_service"]
    assert service["path_prefix"] == "/decisions"
    assert service["server_uri"]["cluster"] == "gateway"
    upstream = service["authorization_response"]["allowed_upstream_headers"]["patterns"]
    assert upstream == [{"exact": name.lower(), "ignore_case": True} for name in NAMES]
    client = service["authorization_response"]["allowed_client_headers"]["patterns"]
    assert {"exact": "www-authenticate", "ignore_case": True} in client
    # RFC 9449 §8: the next nonce reaches the client, refused or allowed
    assert {"exact": "dpop-nonce", "ignore_case": True} in client
    on_success = service["authorization_response"]["allowed_client_headers_on_success"]
    assert on_success["patterns"] == [{"exact": "dpop-nonce", "ignore_case": True}]
    # x-forwarded-proto is Envoy's, never a client's
    assert _find(bootstrap, "use_remote_address") == [True]
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    addresses = {name: _find(cluster, "socket_address")[0] for name, cluster in clusters.items()}
    assert addresses == {
        "gateway": {"address": "127.0.0.1", "port_value": 8100},
        "upstream": {"address": "10.0.0.5", "port_value": 8080},
    }
    manager = _find(bootstrap, "common_http_protocol_options")[0]
    assert manager == {"headers_with_underscores_action": "DROP_HEADER"}
    # issue 15 §1: admin.example. is routed, and decided on, as admin.example
    assert _find(bootstrap, "strip_trailing_host_dot") == [True]
    listener = bootstrap["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 9000
    # RFC 9728 metadata goes to the gateway, undecided, ahead of the catch-all
    routes = _find(bootstrap, "routes")[0]
    assert [(r["match"], r["route"]["cluster"]) for r in routes] == [
        ({"path": "/.well-known/oauth-protected-resource"}, "gateway"),
        ({"prefix": "/.well-known/oauth-protected-resource/"}, "gateway"),
        ({"prefix": "/"}, "upstream"),
    ]
    for route in routes[:2]:
        per_route = route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]
        assert per_route["@type"].endswith("ext_authz.v3.ExtAuthzPerRoute")
        assert per_route["disabled"] is True
    assert "typed_per_filter_config" not in routes[2]


def test_nginx_copies_and_clears_every_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = edge_config(tmp_path, capsys, "nginx", host="::1")
    for name in NAMES:
        variable = "$gateway_" + name.lower().replace("-", "_")
        assert (
            f"auth_request_set {variable} $upstream_http_{name.lower().replace('-', '_')};" in out
        )
        assert f"proxy_set_header {name} {variable};" in out
    for cleared in ("X-Forwarded-Method", "X-Forwarded-Host", "X-Forwarded-Uri"):
        assert f'proxy_set_header {cleared} "";' in out
    assert "server [::1]:8100;" in out
    assert "proxy_pass http://gateway_decisions/decisions;" in out
    assert "proxy_pass http://orders.internal:9001/v1;" in out


def test_caddy_removes_every_spelling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = edge_config(tmp_path, capsys, "caddy", "--listen", "8443")
    assert out.splitlines()[2] == ":8443 {"
    assert f"copy_headers {' '.join(NAMES)}" in out
    for spelling in ("X-Forwarded-Client-Id", "X_Forwarded-Client_Id", "X_Forwarded_Client_Id"):
        assert f"request_header -{spelling}\n" in out
    for spelling in ("X_HTTP_Method_Override", "X-HTTP_Method", "X_Method-Override"):
        assert f"request_header -{spelling}\n" in out
    for name in OVERRIDES:  # decided on by the gateway
        assert f"request_header -{name}\n" not in out
    assert "forward_auth 127.0.0.1:8100 {" in out
    # the Host as sent, port included, for the gateway to check whole
    assert "header_up X-Forwarded-Host {hostport}\n" in out


def test_the_gateway_address_can_be_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = edge_config(tmp_path, capsys, "traefik", "--gateway", "http://gateway.internal:8000")
    auth = yaml.safe_load(out)["http"]["middlewares"]["gateway"]["forwardAuth"]
    assert auth["address"] == "http://gateway.internal:8000/decisions"
    config = tmp_path / "gateway.toml"
    assert main(["--config", str(config), "edge-config", "nginx", "--gateway", "gw:80/x"]) == 2
    assert "--gateway: 'gw:80/x' is not an http://host:port URL" in capsys.readouterr().err


def test_an_unknown_edge_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["edge-config", "haproxy"])
    assert exited.value.code == 2
    assert "invalid choice: 'haproxy'" in capsys.readouterr().err


@pytest.mark.parametrize("edge", ["nginx", "caddy", "traefik", "envoy"])
def test_the_docs_show_what_the_command_prints(
    edge: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    edges_doc = (Path(__file__).resolve().parents[1] / "docs" / "edges.md").read_text()
    block = edges_doc.split(f"<!-- edge-config {edge} -->\n```", 1)[1].split("\n", 1)[1]
    assert main(["edge-config", edge]) == 0
    assert block.split("```", 1)[0] == capsys.readouterr().out
