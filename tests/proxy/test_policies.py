"""What the header policies remember between requests never crosses from one request's
inputs to another's: forwarding headers are remembered per (peer, scheme, host) only when the
peer is untrusted, identity headers per token and per policy."""

from __future__ import annotations

from gateway.config import IdentityHeaders
from gateway.forwarded import ForwardedPolicy
from gateway.introspect.validator import AccessToken
from gateway.proxy.headers import HeaderPolicy

CHAIN = {b"x-forwarded-for": ["203.0.113.9"], b"x-forwarded-proto": ["https"]}


def test_untrusted_views_differ_by_peer_scheme_and_host() -> None:
    policy = ForwardedPolicy(("10.0.0.0/8",))
    views = {
        (peer, scheme, host): dict(policy.headers(CHAIN, peer, scheme, host))
        for peer in ("192.0.2.1", "192.0.2.2")
        for scheme in ("http", "https")
        for host in ("a.test", "b.test", None)
    }
    assert len({tuple(sorted(v.items())) for v in views.values()}) == len(views)
    again = dict(policy.headers(CHAIN, "192.0.2.1", "http", "a.test"))
    assert again == views[("192.0.2.1", "http", "a.test")]
    assert again[b"X-Forwarded-For"] == b"192.0.2.1"  # the client's chain is not kept


def test_a_trusted_chain_is_built_per_request() -> None:
    policy = ForwardedPolicy(("10.0.0.0/8",))
    first = dict(policy.headers(CHAIN, "10.1.1.1", "http", "a.test"))
    other = dict(
        policy.headers({b"x-forwarded-for": ["198.51.100.7"]}, "10.1.1.1", "http", "a.test")
    )
    assert first[b"X-Forwarded-For"] == b"203.0.113.9, 10.1.1.1"
    assert other[b"X-Forwarded-For"] == b"198.51.100.7, 10.1.1.1"


def token() -> AccessToken:
    return AccessToken(
        sub="u1", client_id="c1", scopes=frozenset({"b", "a"}), jti="j", exp=0, iat=0, aud=()
    )


def test_identity_headers_are_built_once_per_token_and_policy() -> None:
    default = HeaderPolicy(IdentityHeaders())
    renamed = HeaderPolicy(IdentityHeaders(user="X-User"))
    access = token()
    first = default.identity(access)
    assert default.identity(access) is first
    assert (b"X-Forwarded-User", b"u1") in first
    assert (b"X-Forwarded-Scopes", b"a b") in first
    assert (b"X-User", b"u1") in renamed.identity(access)
    assert (b"X-Forwarded-User", b"u1") in default.identity(access)
