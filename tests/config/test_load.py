"""Loading the config file: defaults without a file, and ``ConfigError`` naming the file and
the dotted key for unknown keys, wrong types and invalid values."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config == Config(base_dir=os.getcwd())
    assert config.issuer == "http://127.0.0.1:8000"
    assert config.keys.algorithm == "RS256"
    assert config.throttle.max_failures == 5
    assert config.tokens.rotate_refresh_tokens is True
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'gateway.db'}"


def test_environment_variable_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, 'issuer = "https://auth.example.com"\n')
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    assert load_config().issuer == "https://auth.example.com"


def test_values_and_relative_paths(tmp_path):
    path = write(
        tmp_path,
        """
issuer = "https://auth.example.com"
[database]
url = "sqlite:///data/g.db"
[keys]
dir = "secrets"
algorithm = "ES256"
reload_interval = 1
[tokens]
access_token_ttl = 300
rotate_refresh_tokens = false
[throttle]
max_failures = 3
""",
    )
    config = load_config(path)
    assert config.keys.algorithm == "ES256"
    assert config.keys.reload_interval == 1.0 and isinstance(config.keys.reload_interval, float)
    assert config.tokens.access_token_ttl == 300
    assert config.tokens.rotate_refresh_tokens is False
    assert config.throttle.max_failures == 3
    assert config.keys_dir == tmp_path.resolve() / "secrets"
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'data' / 'g.db'}"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param("isuer = 'x'", "isuer", "unknown key", id="unknown-top-level"),
        pytest.param("[tokens]\naccess_ttl = 5", "tokens.access_ttl", "unknown key", id="nested"),
        pytest.param("[nope]\na = 1", "nope", "unknown key", id="unknown-table"),
        pytest.param(
            "[proxy.identity_headers]\nusr = 'X'",
            "proxy.identity_headers.usr",
            "unknown key",
            id="deep",
        ),
        pytest.param("[server]\nport = '80'", "server.port", "must be an integer", id="str-int"),
        pytest.param("[server]\nport = 80.5", "server.port", "must be an integer", id="float-int"),
        pytest.param("[server]\nport = true", "server.port", "must be an integer", id="bool-int"),
        pytest.param(
            "[tokens]\nrotate_refresh_tokens = 'yes'",
            "tokens.rotate_refresh_tokens",
            "must be true or false",
            id="str-bool",
        ),
        pytest.param(
            "[keys]\nreload_interval = 'fast'",
            "keys.reload_interval",
            "must be a number",
            id="str-float",
        ),
        pytest.param("issuer = 5", "issuer", "must be a string", id="int-str"),
        pytest.param("tokens = 5", "tokens", "must be a table", id="not-a-table"),
        pytest.param(
            "[proxy]\ntrusted_proxies = '10.0.0.1'",
            "proxy.trusted_proxies",
            "must be a list of strings",
            id="str-list",
        ),
        pytest.param("[keys]\nalgorithm = 'HS256'", "keys.algorithm", "must be one of", id="alg"),
        pytest.param("[keys]\nalgorithm = 'none'", "keys.algorithm", "must be one of", id="none"),
        pytest.param(
            "[tokens]\naccess_token_ttl = 0",
            "tokens.access_token_ttl",
            "must be positive",
            id="zero-ttl",
        ),
        pytest.param(
            "[throttle]\nmax_failures = -1",
            "throttle.max_failures",
            "must be positive",
            id="negative-throttle",
        ),
        pytest.param(
            "[throttle]\nmax_address_failures = 0",
            "throttle.max_address_failures",
            "must be positive",
            id="zero-address-budget",
        ),
        pytest.param(
            "[throttle]\nmax_user_delay = -1",
            "throttle.max_user_delay",
            "must not be negative",
            id="negative-user-delay",
        ),
        pytest.param("[tokens]\nleeway = -1", "tokens.leeway", "must not be negative", id="leeway"),
        pytest.param(
            "[tokens]\nrefresh_reuse_grace = -0.5",
            "tokens.refresh_reuse_grace",
            "must not be negative",
            id="negative-grace",
        ),
        pytest.param(
            "[tokens]\nrefresh_reuse_grace = '5s'",
            "tokens.refresh_reuse_grace",
            "must be a number",
            id="grace-not-a-number",
        ),
        pytest.param("issuer = 'ftp://x'", "issuer", "http(s) URL", id="issuer-scheme"),
        pytest.param("issuer = 'https://x/?a=b'", "issuer", "http(s) URL", id="issuer-query"),
        pytest.param("[server]\nport = 70000", "server.port", "between 1 and 65535", id="port"),
        pytest.param(
            "[sessions]\nidle_timeout = 0",
            "sessions.idle_timeout",
            "must be positive",
            id="zero-idle-timeout",
        ),
        pytest.param(
            "[scopes.descriptions]\n'orders:read' = 1",
            "scopes.descriptions",
            "must be a table of strings",
            id="description-not-a-string",
        ),
        pytest.param(
            "[scopes]\ndescriptions = 'x'",
            "scopes.descriptions",
            "must be a table of strings",
            id="descriptions-not-a-table",
        ),
        pytest.param("[dpop]\nproof_max_age = 0", "dpop.proof_max_age", "positive", id="dpop-age"),
        pytest.param(
            "[dpop]\nnonce_lifetime = -1", "dpop.nonce_lifetime", "positive", id="nonce-life"
        ),
        pytest.param(
            "[dpop]\nnonce_scope = 'cluster'", "dpop.nonce_scope", "must be", id="nonce-scope"
        ),
        pytest.param(
            "[dpop]\nreplay_cache_size = 0", "dpop.replay_cache_size", "positive", id="replays"
        ),
        pytest.param(
            "[par]\nrequest_lifetime = 601", "par.request_lifetime", "at most", id="par-life"
        ),
        pytest.param("[par]\nrequest_lifetime = 0", "par.request_lifetime", "positive", id="par-0"),
        pytest.param(
            "[[routes]]\npath = '/a'\nupstream = 'http://h'\ndpop = 'always'",
            "routes[0].dpop",
            "must be",
            id="route-dpop",
        ),
        pytest.param(
            "[[routes]]\npath = '/a'\nupstream = 'http://h'\npublic = true\ndpop = 'required'",
            "routes[0].dpop",
            "public",
            id="public-dpop",
        ),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, text, key, problem):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(None, "file not found", id="missing"),
        pytest.param("issuer = ", "not valid TOML", id="bad-toml"),
        pytest.param("[tokens]\n[tokens]\n", "not valid TOML", id="duplicate-table"),
    ],
)
def test_unreadable_files(tmp_path, text, problem):
    path = tmp_path / "gateway.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as raised:
        load_config(path)
    assert str(raised.value).startswith(str(path))


def test_sessions_and_scope_descriptions(tmp_path):
    text = """
[sessions]
lifetime = 600
logout_revokes_tokens = true

[scopes.descriptions]
"orders:read" = "See your orders"
"""
    config = load_config(write(tmp_path, text))
    assert config.sessions.lifetime == 600.0
    assert config.sessions.idle_timeout == 3600.0
    assert config.sessions.logout_revokes_tokens is True
    assert config.scopes.descriptions == {"orders:read": "See your orders"}
    assert Config().scopes.descriptions == {}


def test_the_example_config_shows_every_table_with_the_defaults():
    """config.example.toml ("every key with its default") loads, names every table of
    ``Config`` (the commented-out ones too) and gives the defaults where it sets a key."""
    path = Path(__file__).parents[2] / "config.example.toml"
    text = path.read_text()
    tables = [
        f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)
    ]
    for name in tables:
        assert f"[{name}" in text, name
    assert "[scopes.descriptions]" in text
    config = load_config(path)
    assert config.sessions == Config().sessions
    assert config.scopes == Config().scopes
