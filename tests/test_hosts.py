"""``gateway.hosts``: one normalisation of a host for routes, ``/decisions`` and the forwarding
headers (RFC 9110 §7.2, RFC 3986 §3.2.2): the spellings of one host agree, anything that is not
a host name or an IP literal is refused."""

from __future__ import annotations

import pytest

from gateway import hosts
from gateway.errors import BadHost
from gateway.hosts import Host, HostCache, is_loopback_host, parse_host

VALID = [
    pytest.param("admin.local", "admin.local", "admin.local", id="name"),
    pytest.param("admin.local.", "admin.local", "admin.local", id="trailing-dot"),
    pytest.param("ADMIN.Local", "admin.local", "admin.local", id="upper-case"),
    pytest.param("Admin.Local.:8443", "admin.local", "admin.local:8443", id="dot-case-port"),
    pytest.param("admin.local:80", "admin.local", "admin.local:80", id="port"),
    pytest.param("admin.local:0080", "admin.local", "admin.local:80", id="port-leading-zeros"),
    pytest.param("admin.local:65535", "admin.local", "admin.local:65535", id="highest-port"),
    pytest.param("localhost", "localhost", "localhost", id="single-label"),
    pytest.param("my_host-1.example", "my_host-1.example", None, id="dash-underscore"),
    pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", None, id="a-label"),
    pytest.param("1.example", "1.example", None, id="numeric-first-label"),
    pytest.param("10.0.0.1", "10.0.0.1", None, id="ipv4"),
    pytest.param("255.255.255.255:1", "255.255.255.255", "255.255.255.255:1", id="ipv4-port"),
    pytest.param("10.0.0.1.", "10.0.0.1", None, id="ipv4-trailing-dot"),
    pytest.param("[::1]", "[::1]", None, id="ipv6"),
    pytest.param("[0:0::1]:8000", "[::1]", "[::1]:8000", id="ipv6-compressed-port"),
    pytest.param("[2001:DB8::A]", "[2001:db8::a]", None, id="ipv6-upper-case"),
    pytest.param("[::ffff:10.0.0.1]", "[::ffff:a00:1]", None, id="ipv6-mapped-ipv4"),
    pytest.param(f"{'a' * 63}.example", f"{'a' * 63}.example", None, id="label-63"),
    pytest.param(
        ".".join(["a" * 63] * 3 + ["a" * 61]),
        ".".join(["a" * 63] * 3 + ["a" * 61]),
        None,
        id="name-253",
    ),
]


@pytest.mark.parametrize(("raw", "name", "authority"), VALID)
def test_valid_hosts_are_normalised(raw: str, name: str, authority: str | None) -> None:
    assert parse_host(raw) == Host(name, authority or name)


INVALID = [
    pytest.param("", id="empty"),
    pytest.param(".", id="only-dot"),
    pytest.param("admin.local..", id="two-trailing-dots"),
    pytest.param("a..b", id="empty-label"),
    pytest.param(".a", id="leading-dot"),
    pytest.param("a@admin.local", id="userinfo"),
    pytest.param("user:pass@admin.local", id="userinfo-password"),
    pytest.param("admin.local/x", id="slash"),
    pytest.param("admin.local\\x", id="backslash"),
    pytest.param("admin local", id="space"),
    pytest.param("admin.local\t", id="tab"),
    pytest.param("admin.local\x00", id="nul"),
    pytest.param("admin.local\r\nx: y", id="crlf"),
    pytest.param("admin%2elocal", id="percent-encoded"),
    pytest.param("bücher.example", id="non-ascii"),
    pytest.param(f"{'a' * 64}.example", id="label-64"),
    pytest.param(".".join(["a" * 63] * 3 + ["a" * 62]), id="name-254"),
    pytest.param("admin.local:", id="empty-port"),
    pytest.param("admin.local:0", id="port-zero"),
    pytest.param("admin.local:65536", id="port-too-high"),
    pytest.param("admin.local:99999", id="port-99999"),
    pytest.param("admin.local:123456", id="port-six-digits"),
    pytest.param("admin.local:+1", id="port-sign"),
    pytest.param("admin.local:8x", id="port-letters"),
    pytest.param("admin.local:80:80", id="two-ports"),
    pytest.param("admin.local.:", id="dot-empty-port"),
    pytest.param("::1", id="ipv6-unbracketed"),
    pytest.param("[foo]", id="bracketed-name"),
    pytest.param("[v1.x]", id="ipvfuture"),
    pytest.param("[fe80::1%25eth0]", id="ipv6-zone"),
    pytest.param("[::1", id="ipv6-unclosed"),
    pytest.param("[::1]x", id="ipv6-trailing-junk"),
    pytest.param("[::1]:", id="ipv6-empty-port"),
    pytest.param("[::g]", id="ipv6-bad-digit"),
    pytest.param("256.0.0.1", id="ipv4-octet-too-high"),
    pytest.param("010.0.0.1", id="ipv4-leading-zero"),
    pytest.param("0x7f.0.0.1", id="ipv4-hex"),
    pytest.param("127.1", id="ipv4-short"),
    pytest.param("1.2.3.4.5", id="ipv4-five-parts"),
    pytest.param("example.123", id="numeric-last-label"),
    pytest.param("admin.local,evil.test", id="comma"),
    pytest.param("admin.local;x", id="semicolon"),
    pytest.param('"admin.local"', id="quoted"),
]


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_hosts_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_host(raw)
    with pytest.raises(BadHost):
        HostCache().parse(raw.encode("utf-8"))


def test_the_cache_answers_alike_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosts, "CACHE_SIZE", 4)
    cache = HostCache()
    for round in range(2):  # the second round is answered from memory
        for n in range(10):
            assert cache.parse(f"h{n}.test.:{8000 + n}".encode()) == (
                f"h{n}.test",
                f"h{n}.test:{8000 + n}",
            ), round
            with pytest.raises(BadHost):
                cache.parse(f"h{n}..test".encode())
            assert len(cache._hosts) <= 4


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost.", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost.example.com", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """One answer for where a redirect URI reaches the user's own device: the registration
    endpoint's rules and the consent page's loopback warning ask the same question."""
    assert is_loopback_host(host) is loopback
