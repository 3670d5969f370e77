"""RFC 6750 §3 challenges as ``gateway.errors`` writes them, with RFC 9728 §5.1's
``resource_metadata`` and the ``scope`` a 401 asks for (both set at a route:
tests/proxy/test_auth.py)."""

from __future__ import annotations

import pytest

from gateway.errors import BearerError, InsufficientScope, InvalidToken, MissingToken

URL = "https://api.example.com/.well-known/oauth-protected-resource/mcp"


def at_route(error: BearerError, scope: str | None = None) -> BearerError:
    error.resource_metadata = URL
    if scope is not None:
        error.scope = scope
    return error


@pytest.mark.parametrize(
    ("error", "challenge"),
    [
        pytest.param(MissingToken(), 'Bearer realm="gateway"', id="missing-alone"),
        pytest.param(
            at_route(MissingToken()),
            f'Bearer realm="gateway", resource_metadata="{URL}"',
            id="missing-at-a-route-without-scopes",
        ),
        pytest.param(
            at_route(MissingToken(), "mcp:use extra"),
            f'Bearer realm="gateway", scope="mcp:use extra", resource_metadata="{URL}"',
            id="missing-at-a-route",
        ),
        pytest.param(
            InvalidToken("token expired"),
            'Bearer realm="gateway", error="invalid_token", error_description="token expired"',
            id="invalid-alone",
        ),
        pytest.param(
            at_route(InvalidToken("wrong audience"), "a"),
            'Bearer realm="gateway", error="invalid_token", '
            f'error_description="wrong audience", scope="a", resource_metadata="{URL}"',
            id="invalid-at-a-route",
        ),
        pytest.param(
            InsufficientScope("a b"),
            'Bearer realm="gateway", error="insufficient_scope", scope="a b"',
            id="insufficient-alone",
        ),
        pytest.param(
            at_route(InsufficientScope("a b")),
            'Bearer realm="gateway", error="insufficient_scope", scope="a b", '
            f'resource_metadata="{URL}"',
            id="insufficient-at-a-route",
        ),
    ],
)
def test_challenges(error: BearerError, challenge: str) -> None:
    assert error.headers() == {"WWW-Authenticate": challenge}
    status, headers, _ = error.response_parts()
    assert (b"www-authenticate", challenge.encode()) in headers
    assert status == (403 if isinstance(error, InsufficientScope) else 401)


def test_the_body_does_not_change_at_a_route() -> None:
    """The challenge carries the pointers; the JSON body stays RFC 6750's error."""
    assert at_route(InvalidToken("bad signature"), "a").body() == {
        "error": "invalid_token",
        "error_description": "bad signature",
    }
    assert at_route(MissingToken(), "a").body() == {
        "error": "unauthorized",
        "error_description": "an access token is required",
    }
    assert at_route(InsufficientScope("a")).body()["scope"] == "a"


def test_a_url_is_a_quoted_string() -> None:
    """RFC 9110 §5.6.4: '"' and '\\' as quoted-pairs, controls dropped (identifiers hold
    none of them: the config allows URI characters only; this is the last line)."""
    error = MissingToken()
    error.resource_metadata = 'https://h.example/a"b\\c\r\nX-Injected: 1'
    challenge = error.challenge()
    assert challenge == (
        'Bearer realm="gateway", resource_metadata="https://h.example/a\\"b\\\\cX-Injected: 1"'
    )
    assert "\r" not in challenge and "\n" not in challenge


def test_rfc_6750_values_lose_what_their_grammar_excludes() -> None:
    error = InsufficientScope('a"b\\c')
    assert error.challenge() == 'Bearer realm="gateway", error="insufficient_scope", scope="abc"'
