"""``gateway.accounts``: the redirect-URI rule that ``gateway client create`` and the
registration endpoint share, and its reasons, which never quote the URI."""

from __future__ import annotations

import pytest

from gateway import accounts
from gateway.errors import InvalidInput
from gateway.storage import Storage


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("https://app.example/cb", id="https"),
        pytest.param("http://127.0.0.1:9999/cb", id="loopback"),
        pytest.param("http://[::1]/cb", id="loopback-v6"),
        pytest.param("http://localhost/cb", id="localhost"),
        pytest.param("com.example.app:/cb", id="private-use-scheme"),
        pytest.param("https://app.example/cb?x=1", id="query"),
    ],
)
def test_acceptable_redirect_uris(uri: str) -> None:
    assert accounts.redirect_uri_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        pytest.param("https://app.example/c b", "white space", id="space"),
        pytest.param("https://app.example/cb\t", "white space", id="tab"),
        pytest.param("https://app.example/\x00", "control characters", id="nul"),
        pytest.param("https://app.example/\x7f", "control characters", id="del"),
        pytest.param("https://app.example/\u200b", "control characters", id="zero-width"),
        pytest.param("/cb", "absolute", id="relative"),
        pytest.param("https://app.example/cb#x", "fragment", id="fragment"),
        pytest.param("https://app.example/cb#", "fragment", id="empty-fragment"),
        pytest.param("JavaScript:alert(1)", "scheme", id="javascript"),
        pytest.param("data:text/html,x", "scheme", id="data"),
        pytest.param("http://app.example/cb", "loopback", id="plain-http"),
        pytest.param("https:///cb", "no host", id="no-host"),
    ],
)
def test_refused_redirect_uris_say_why_without_quoting(uri: str, problem: str) -> None:
    reason = accounts.redirect_uri_problem(uri)
    assert reason is not None and problem in reason
    assert uri not in reason


def test_client_create_refuses_a_redirect_uri_with_white_space(storage: Storage) -> None:
    with storage.session() as session, pytest.raises(InvalidInput, match="white space"):
        accounts.create_client(
            session, "App", ["https://app.example/c b"], ["authorization_code"], "", "none"
        )


def test_a_client_says_how_it_came(storage: Storage) -> None:
    with storage.session() as session:
        made = accounts.create_client(
            session, "CLI", [], ["client_credentials"], "", "client_secret_basic"
        )
        registered = accounts.create_client(
            session, "Agent", [], ["client_credentials"], "", "client_secret_basic",
            origin="registration",
        )  # fmt: skip
    assert made.client.origin == "cli"
    assert registered.client.origin == "registration"
