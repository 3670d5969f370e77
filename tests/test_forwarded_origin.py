"""``ForwardedPolicy.origin``: the scheme and host a client used (a DPoP proof's ``htu``),
from forwarding headers only when a trusted proxy sent them."""

from __future__ import annotations

import pytest

from gateway.forwarded import ForwardedPolicy

POLICY = ForwardedPolicy(("10.0.0.0/8",))


@pytest.mark.parametrize(
    ("received", "origin"),
    [
        pytest.param({}, "http://gw.test:8080", id="none"),
        pytest.param(
            {b"x-forwarded-proto": ["https"], b"x-forwarded-host": ["api.example.com"]},
            "https://api.example.com",
            id="x-forwarded",
        ),
        pytest.param(
            {b"x-forwarded-proto": ["HTTPS"]}, "https://gw.test:8080", id="proto-only-lowered"
        ),
        pytest.param(
            {b"x-forwarded-proto": ["http, https"], b"x-forwarded-host": ["a.test", "b.test"]},
            "https://b.test",
            id="the-nearest-proxys-value",
        ),
        pytest.param(
            {b"forwarded": ['for=1.2.3.4;proto=https;host="api.example.com:8443"']},
            "https://api.example.com:8443",
            id="forwarded",
        ),
        pytest.param(
            {
                b"forwarded": ["proto=http;host=old.test, proto=https;Host=new.test"],
            },
            "https://new.test",
            id="forwarded-last-element",
        ),
        pytest.param(
            {b"x-forwarded-host": ["x.test"], b"forwarded": ["host=f.test;proto=https"]},
            "https://x.test",
            id="x-forwarded-first",
        ),
    ],
)
def test_from_a_trusted_proxy(received: dict[bytes, list[str]], origin: str) -> None:
    assert POLICY.origin(received, "10.1.2.3", "http", "gw.test:8080") == origin


def test_an_untrusted_peer_gets_the_requests_own() -> None:
    received = {b"x-forwarded-proto": ["https"], b"x-forwarded-host": ["api.example.com"]}
    assert POLICY.origin(received, "192.0.2.1", "http", "gw.test") == "http://gw.test"
    assert ForwardedPolicy(()).origin(received, "10.1.2.3", "http", "gw.test") == "http://gw.test"


def test_no_host_no_origin() -> None:
    assert POLICY.origin({}, "192.0.2.1", "http", None) == ""
