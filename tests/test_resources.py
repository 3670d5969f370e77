"""The protected resources (issue 17 §1): the registry built from the routes, and the route
keys that describe them, checked when the config file is loaded (real TOML files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.resources import METADATA_PREFIX, Resource, Resources, metadata_path

UP = "http://127.0.0.1:9001"
HEAD = 'issuer = "https://auth.example.com"\n[tokens]\naudience = "https://api.example.com"\n'


def load(tmp_path: Path, routes: str, head: str = HEAD) -> Config:
    path = tmp_path / "gateway.toml"
    path.write_text(head + routes)
    return load_config(path)


def route(path: str, extra: str = "", name: str | None = None) -> str:
    named = f'name = "{name}"\n' if name else ""
    return f'[[routes]]\n{named}path = "{path}"\nupstream = "{UP}"\n{extra}\n'


def resource(identifier: str) -> Resource:
    return Resource(identifier, None, None, ())


class TestRegistry:
    def test_routes_sharing_an_identifier_are_one_resource(self, tmp_path: Path) -> None:
        config = load(
            tmp_path,
            route("/orders", 'scopes = ["orders:read"]')
            + route("/orders/admin", 'scopes = [["orders:admin", "openid"], ["root"]]')
            + route("/mcp", 'audience = "https://api.example.com/mcp"\nscopes = ["tools"]')
            + route("/public", "public = true"),
        )
        resources = Resources.from_config(config)
        assert [r.identifier for r in resources] == [
            "https://api.example.com",
            "https://api.example.com/mcp",
        ]
        assert len(resources) == 2
        shared = resources.get("https://api.example.com")
        assert shared is not None
        # the union of every set of every route, sorted, openid never
        assert shared.scopes == ("orders:admin", "orders:read", "root")
        mcp = resources.get("https://api.example.com/mcp")
        assert mcp is not None and mcp.scopes == ("tools",)

    def test_identifiers_compare_as_strings(self, tmp_path: Path) -> None:
        resources = Resources.from_config(load(tmp_path, route("/orders")))
        assert resources.get("https://api.example.com") is not None
        assert resources.get("https://api.example.com/") is None
        assert resources.get("https://API.example.com") is None

    def test_tool_scopes_are_the_resources_scopes_too(self, tmp_path: Path) -> None:
        config = load(
            tmp_path,
            route(
                "/mcp",
                'mcp = true\nscopes = ["mcp"]\n'
                'mcp_tool_scopes = { "read_*" = [], "delete_*" = [["admin", "openid"]] }',
            ),
        )
        [only] = Resources.from_config(config)
        assert only.scopes == ("admin", "mcp")

    def test_no_routes_no_resources(self, tmp_path: Path) -> None:
        resources = Resources.from_config(load(tmp_path, route("/p", "public = true")))
        assert len(resources) == 0 and list(resources) == []

    def test_identifier_defaults_to_the_issuer(self, tmp_path: Path) -> None:
        config = load(tmp_path, route("/orders"), head='issuer = "https://auth.example.com"\n')
        [only] = Resources.from_config(config)
        assert only.identifier == "https://auth.example.com"

    def test_name_and_documentation_from_any_route_of_the_resource(self, tmp_path: Path) -> None:
        config = load(
            tmp_path,
            route("/a")
            + route("/b", 'resource_name = "Orders API"')
            + route("/c", 'resource_documentation = "https://docs.example.com/orders"')
            + route("/d", 'resource_name = "Orders API"'),
        )
        [only] = Resources.from_config(config)
        assert (only.name, only.documentation) == ("Orders API", "https://docs.example.com/orders")
        assert only.label == "Orders API"

    def test_dpop_required_only_when_every_route_requires_it(self, tmp_path: Path) -> None:
        """RFC 9728 §2: ``dpop_bound_access_tokens_required`` says the resource "always
        requires" DPoP-bound tokens: one route of it taking bearer tokens makes it false."""
        mcp = 'audience = "https://api.example.com/mcp"\n'
        config = load(
            tmp_path,
            route("/orders", 'dpop = "required"')
            + route("/orders/list")
            + route("/mcp", mcp + 'dpop = "required"')
            + route("/mcp/admin", mcp + 'dpop = "required"'),
        )
        resources = Resources.from_config(config)
        mixed = resources.get("https://api.example.com")
        only_dpop = resources.get("https://api.example.com/mcp")
        assert mixed is not None and only_dpop is not None
        assert (mixed.dpop_required, only_dpop.dpop_required) == (False, True)
        document = only_dpop.metadata("https://auth.example.com")
        assert document["dpop_bound_access_tokens_required"] is True
        assert "dpop_bound_access_tokens_required" not in mixed.metadata("https://a.example")

    def test_of_a_route(self, tmp_path: Path) -> None:
        config = load(
            tmp_path,
            route("/orders")
            + route("/mcp", 'audience = "https://api.example.com/mcp"')
            + route("/pub", 'public = true\naudience = "https://elsewhere.example.com"'),
        )
        resources = Resources.from_config(config)
        orders, mcp, public = config.routes
        assert resources.of(orders) is resources.get("https://api.example.com")
        assert resources.of(mcp) is resources.get("https://api.example.com/mcp")
        assert resources.of(public) is None
        assert resources.get("https://elsewhere.example.com") is None


class TestDocument:
    def test_metadata_document(self) -> None:
        full = Resource(
            "https://api.example.com/mcp", "Tools", "https://docs.example.com/", ("a", "b")
        )
        assert full.metadata("https://auth.example.com") == {
            "resource": "https://api.example.com/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["a", "b"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "PS256", "RS256"],
            "resource_name": "Tools",
            "resource_documentation": "https://docs.example.com/",
        }
        bare = resource("https://api.example.com").metadata("https://auth.example.com")
        assert "resource_name" not in bare and "resource_documentation" not in bare
        assert "resource_signing_alg_values_supported" not in bare
        assert "dpop_bound_access_tokens_required" not in bare

    def test_label_without_a_name_is_host_and_path(self) -> None:
        assert resource("https://api.example.com/mcp/").label == "api.example.com/mcp"
        assert resource("https://api.example.com:8443").label == "api.example.com:8443"


class TestMetadataLocation:
    """RFC 9728 §3.1: the well-known suffix goes between the host and the path."""

    @pytest.mark.parametrize(
        ("identifier", "path", "url"),
        [
            pytest.param(
                "https://api.example.com",
                METADATA_PREFIX,
                "https://api.example.com/.well-known/oauth-protected-resource",
                id="no-path",
            ),
            pytest.param(
                "https://api.example.com/",
                METADATA_PREFIX,
                "https://api.example.com/.well-known/oauth-protected-resource",
                id="lone-slash-dropped",
            ),
            pytest.param(
                "https://api.example.com/mcp",
                METADATA_PREFIX + "/mcp",
                "https://api.example.com/.well-known/oauth-protected-resource/mcp",
                id="path",
            ),
            pytest.param(
                "https://api.example.com/tenant/mcp/",
                METADATA_PREFIX + "/tenant/mcp/",
                "https://api.example.com/.well-known/oauth-protected-resource/tenant/mcp/",
                id="trailing-slash-kept-after-a-path",
            ),
            pytest.param(
                "https://API.example.com:8443/a%20b",
                METADATA_PREFIX + "/a%20b",
                "https://API.example.com:8443/.well-known/oauth-protected-resource/a%20b",
                id="port-and-encoding-kept-as-written",
            ),
            pytest.param(
                "http://[::1]:8000/mcp",
                METADATA_PREFIX + "/mcp",
                "http://[::1]:8000/.well-known/oauth-protected-resource/mcp",
                id="ipv6-loopback",
            ),
        ],
    )
    def test_path_and_url(self, identifier: str, path: str, url: str) -> None:
        assert metadata_path(identifier) == path
        assert resource(identifier).metadata_path == path
        assert resource(identifier).metadata_url == url

    @pytest.mark.parametrize(
        ("identifier", "authority"),
        [
            pytest.param("https://API.Example.com./x", "api.example.com", id="case-and-dot"),
            pytest.param("https://api.example.com:443/x", "api.example.com", id="default-port"),
            pytest.param("http://localhost:80/x", "localhost", id="default-http-port"),
            pytest.param("https://api.example.com:8443/x", "api.example.com:8443", id="port"),
            pytest.param("https://[0:0::1]:8443/x", "[::1]:8443", id="ipv6-compressed"),
        ],
    )
    def test_authority_is_normalised_as_hosts_are(self, identifier: str, authority: str) -> None:
        assert resource(identifier).authority == authority


class TestAt:
    """Which resource's metadata a request asks for: the path, then the Host among equals."""

    @pytest.fixture
    def resources(self) -> Resources:
        return Resources(
            tuple(
                resource(identifier)
                for identifier in (
                    "https://api.example.com/mcp",
                    "https://api.example.com:8443/mcp",
                    "https://other.example.com/mcp",
                    "https://[2001:db8::1]/mcp",
                    "https://solo.example.com/only",
                )
            )
        )

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            pytest.param("api.example.com", "https://api.example.com/mcp", id="host"),
            pytest.param("API.Example.COM.", "https://api.example.com/mcp", id="host-normalised"),
            pytest.param("api.example.com:443", "https://api.example.com/mcp", id="default-port"),
            pytest.param("api.example.com:8443", "https://api.example.com:8443/mcp", id="port"),
            pytest.param("api.example.com:9", "https://api.example.com/mcp", id="other-port"),
            pytest.param("other.example.com", "https://other.example.com/mcp", id="other-host"),
            pytest.param("[2001:db8:0::1]", "https://[2001:db8::1]/mcp", id="ipv6"),
            pytest.param("[2001:db8::1]:443", "https://[2001:db8::1]/mcp", id="ipv6-port"),
            pytest.param("unknown.example.com", None, id="no-such-host"),
            pytest.param("bad host", None, id="invalid-host"),
            pytest.param(None, None, id="no-host"),
        ],
    )
    def test_host_picks_among_one_path(
        self, resources: Resources, host: str | None, expected: str | None
    ) -> None:
        found = resources.at(METADATA_PREFIX + "/mcp", host)
        assert (found and found.identifier) == expected

    def test_port_order_does_not_matter(self) -> None:
        """A Host naming a port picks the identifier with that port even after a port-less one."""
        both = Resources(
            (resource("https://h.example/mcp"), resource("https://h.example:8443/mcp"))
        )
        reversed_ = Resources(
            (resource("https://h.example:8443/mcp"), resource("https://h.example/mcp"))
        )
        for registry in (both, reversed_):
            found = registry.at(METADATA_PREFIX + "/mcp", "h.example:8443")
            assert found is not None and found.identifier == "https://h.example:8443/mcp"

    def test_a_lone_resource_at_a_path_answers_any_host(self, resources: Resources) -> None:
        for host in ("solo.example.com", "elsewhere.example.com", None):
            found = resources.at(METADATA_PREFIX + "/only", host)
            assert found is not None and found.identifier == "https://solo.example.com/only"

    @pytest.mark.parametrize(
        "path",
        [
            METADATA_PREFIX,
            METADATA_PREFIX + "/mcp/",
            METADATA_PREFIX + "/MCP",
            METADATA_PREFIX + "/onl",
            METADATA_PREFIX + "/only/x",
            "/mcp",
        ],
    )
    def test_unknown_paths(self, resources: Resources, path: str) -> None:
        assert resources.at(path, "api.example.com") is None


class TestConfigValidation:
    """Bad resource settings stop the load, naming the route and the key."""

    @pytest.mark.parametrize(
        ("audience", "problem"),
        [
            pytest.param("orders", "must be an absolute https:// URI", id="not-absolute"),
            pytest.param("urn:example:orders", "must be an absolute https://", id="urn"),
            pytest.param("ftp://api.example.com/", "must be an absolute https://", id="ftp"),
            pytest.param("https://[::1/", "is not a valid URI", id="broken-ipv6"),
            pytest.param("https://api.example.com:99999/", "is not a valid URI", id="bad-port"),
            pytest.param("http://api.example.com/", "plain http only on a loopback", id="http"),
            pytest.param("https://api.example.com/#x", "must not carry a fragment", id="fragment"),
            pytest.param("https://api.example.com/#", "must not carry a fragment", id="empty-frag"),
            pytest.param("https://api.example.com/?a=1", "must not carry a query", id="query"),
            pytest.param("https://api.example.com/?", "must not carry a query", id="empty-query"),
            pytest.param("https://u:p@api.example.com/", "must not carry credentials", id="creds"),
            pytest.param("https://api.example.com/a b", "white space", id="space"),
            pytest.param('https://api.example.com/a"b', "URI characters only", id="quote"),
            pytest.param("https://api.example.com/a\\b", "URI characters only", id="backslash"),
            pytest.param("https://api.example.com/é", "URI characters only", id="non-ascii"),
            pytest.param("https://api.example.com/%zz", "URI characters only", id="bad-percent"),
            pytest.param("https://api..example.com/", "must name a valid host", id="bad-host"),
        ],
    )
    def test_bad_route_identifier(self, tmp_path: Path, audience: str, problem: str) -> None:
        with pytest.raises(ConfigError, match=r"routes\[1\] \(mcp\): audience: ") as caught:
            load(
                tmp_path, route("/ok") + route("/mcp", f"audience = {json.dumps(audience)}", "mcp")
            )
        assert problem in str(caught.value)

    @pytest.mark.parametrize(
        "audience",
        [
            "https://api.example.com",
            "https://api.example.com/mcp/",
            "http://localhost:8000/mcp",
            "http://127.0.0.1/mcp",
            "http://[::1]:8000/",
            "https://api.example.com/a%20b;v=1/~x",
        ],
    )
    def test_good_route_identifier(self, tmp_path: Path, audience: str) -> None:
        config = load(tmp_path, route("/mcp", f'audience = "{audience}"'))
        assert Resources.from_config(config).get(audience) is not None

    def test_bad_default_identifier_names_where_it_comes_from(self, tmp_path: Path) -> None:
        head = 'issuer = "https://auth.example.com"\n[tokens]\naudience = "gateway"\n'
        with pytest.raises(ConfigError, match=re.escape("audience (tokens.audience or the")):
            load(tmp_path, route("/orders", name="orders"), head=head)

    def test_bad_default_identifier_is_fine_with_only_public_routes(self, tmp_path: Path) -> None:
        head = 'issuer = "https://auth.example.com"\n[tokens]\naudience = "gateway"\n'
        load(tmp_path, route("/p", "public = true"), head=head)

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            pytest.param("https://api.example.com", "https://api.example.com/", id="lone-slash"),
            pytest.param("https://api.example.com/m", "https://API.example.com/m", id="host-case"),
            pytest.param("https://api.example.com/m", "https://api.example.com:443/m", id="port"),
        ],
    )
    def test_identifiers_with_one_metadata_url_refused(
        self, tmp_path: Path, first: str, second: str
    ) -> None:
        with pytest.raises(ConfigError, match="would publish their metadata at the same URL"):
            load(
                tmp_path,
                route("/a", f'audience = "{first}"') + route("/b", f'audience = "{second}"', "b"),
            )

    def test_one_path_on_two_hosts_is_fine(self, tmp_path: Path) -> None:
        config = load(
            tmp_path,
            route("/a", 'audience = "https://a.example.com/mcp"')
            + route("/b", 'audience = "https://b.example.com/mcp"'),
        )
        assert len(Resources.from_config(config)) == 2

    @pytest.mark.parametrize("key", ["resource_name", "resource_documentation"])
    def test_routes_of_one_resource_must_agree(self, tmp_path: Path, key: str) -> None:
        one, two = ("A", "B") if key == "resource_name" else ("https://a.test", "https://b.test")
        with pytest.raises(
            ConfigError, match=re.escape(f"routes[1] (second): {key}: '{two}' differs from '{one}'")
        ):
            load(
                tmp_path,
                route("/a", f'{key} = "{one}"', "first")
                + route("/b", f'{key} = "{two}"', "second"),
            )

    def test_different_resources_may_have_different_names(self, tmp_path: Path) -> None:
        config = load(
            tmp_path,
            route("/a", 'resource_name = "A"')
            + route("/b", 'audience = "https://b.example.com"\nresource_name = "B"'),
        )
        assert [r.name for r in Resources.from_config(config)] == ["A", "B"]

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("docs.example.com", id="not-absolute"),
            pytest.param("javascript:alert(1)", id="javascript"),
            pytest.param("ftp://docs.example.com/", id="ftp"),
            pytest.param("https:///path", id="no-host"),
            pytest.param("https://docs.example.com/a b", id="space"),
            pytest.param('https://docs.example.com/"', id="quote"),
            pytest.param("https://[docs/", id="broken"),
        ],
    )
    def test_bad_resource_documentation(self, tmp_path: Path, value: str) -> None:
        with pytest.raises(
            ConfigError, match=re.escape("routes[0].resource_documentation: must be an http(s) URL")
        ):
            load(tmp_path, route("/a", f"resource_documentation = {json.dumps(value)}"))

    def test_empty_resource_name(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=re.escape("routes[0].resource_name: must not be")):
            load(tmp_path, route("/a", 'resource_name = "  "'))

    def test_tool_scopes_need_mcp(self, tmp_path: Path) -> None:
        with pytest.raises(
            ConfigError, match=re.escape("routes[0].mcp_tool_scopes: applies to mcp = true")
        ):
            load(tmp_path, route("/a", 'mcp_tool_scopes = { "*" = [] }'))
