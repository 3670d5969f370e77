"""The SSRF-safe fetcher (gateway/issuer/fetcher.py), against a real https server on 127.0.0.1
(tests/issuer/documents.py): what it takes, and every way it refuses."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway.issuer.fetcher import (
    FetchRefused,
    Resolver,
    SafeFetcher,
    is_public,
    parse_cache_control,
)
from tests.support.documents import Answer, DocumentServer, ca_file, serving

DOCUMENT = b'{"client_id": "x"}'


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[DocumentServer]:
    with serving(ca) as running:
        running.answers["/doc"] = Answer(DOCUMENT, headers={"Cache-Control": "max-age=120"})
        yield running


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path) -> str:
    """The PEM file of the CA the server's certificate comes from."""
    return str(ca_file(ca, tmp_path))


def lab_fetcher(trusted: str, **options: Any) -> SafeFetcher:
    """A fetcher allowed to reach loopback (where the test server is), trusting its CA."""
    return SafeFetcher(ca_file=trusted, allow_private=True, **options)


def names(mapping: dict[str, list[str]], calls: list[str] | None = None) -> Resolver:
    """A resolver answering from ``mapping``. Tests cannot make a real name resolve where they
    want: no DNS server of theirs is asked, and the machine's resolver knows only localhost.
    So the fetcher's resolver seam is given this one; everything after the lookup is real."""

    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return mapping[host]

    return resolve


# --- what it takes --------------------------------------------------------------------------


def test_fetches_a_document_over_verified_tls(server: DocumentServer, trusted: str) -> None:
    fetched = lab_fetcher(trusted).fetch(server.url("/doc"))
    assert fetched.body == DOCUMENT
    assert fetched.max_age == 120
    assert server.hits["/doc"] == 1


def test_resolves_once_connects_to_the_checked_address_and_sends_sni(
    server: DocumentServer, trusted: str
) -> None:
    calls: list[str] = []
    fetcher = lab_fetcher(trusted, resolver=names({"docs.test": ["127.0.0.1"]}, calls))
    assert fetcher.fetch(server.url("/doc", host="docs.test")).body == DOCUMENT
    assert calls == ["docs.test"]  # one lookup: the connection went to the address checked
    assert server.sni == ["docs.test"]


def test_a_body_of_exactly_the_limit_is_taken(server: DocumentServer, trusted: str) -> None:
    server.answers["/full"] = Answer(b"x" * 5120)
    assert len(lab_fetcher(trusted).fetch(server.url("/full")).body) == 5120


def test_json_with_parameters_is_json(server: DocumentServer, trusted: str) -> None:
    server.answers["/charset"] = Answer(DOCUMENT, content_type="Application/JSON; charset=utf-8")
    assert lab_fetcher(trusted).fetch(server.url("/charset")).max_age is None


@pytest.mark.parametrize(
    ("values", "max_age"),
    [
        pytest.param([], None, id="none"),
        pytest.param(["max-age=300"], 300, id="max-age"),
        pytest.param(["public, MAX-AGE = 90"], 90, id="case-and-spaces"),
        pytest.param(['max-age="45"'], 45, id="quoted"),
        pytest.param(["max-age=soon"], None, id="not-a-number"),
        pytest.param(["max-age=-5"], None, id="negative"),
        pytest.param(["max-age=600", "no-store"], 0, id="no-store"),
        pytest.param(["no-cache"], 0, id="no-cache"),
    ],
)
def test_cache_control(values: list[str], max_age: int | None) -> None:
    assert parse_cache_control(values) == max_age


# --- the address rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        pytest.param("93.184.215.14", True, id="public-v4"),
        pytest.param("2606:4700:4700::1111", True, id="public-v6"),
        pytest.param("::ffff:1.1.1.1", True, id="mapped-public"),
        pytest.param("64:ff9b::101:101", True, id="nat64-public"),
        pytest.param("127.0.0.1", False, id="loopback"),
        pytest.param("127.45.0.9", False, id="loopback-range"),
        pytest.param("::1", False, id="loopback-v6"),
        pytest.param("10.0.0.1", False, id="private-10"),
        pytest.param("172.16.5.4", False, id="private-172"),
        pytest.param("192.168.1.1", False, id="private-192"),
        pytest.param("100.64.0.1", False, id="shared-cgnat"),
        pytest.param("169.254.169.254", False, id="link-local-metadata-service"),
        pytest.param("fe80::1", False, id="link-local-v6"),
        pytest.param("fd00::1", False, id="unique-local"),
        pytest.param("fec0::1", False, id="site-local"),
        pytest.param("224.0.0.1", False, id="multicast"),
        pytest.param("ff02::1", False, id="multicast-v6"),
        pytest.param("0.0.0.0", False, id="unspecified"),
        pytest.param("::", False, id="unspecified-v6"),
        pytest.param("240.0.0.1", False, id="reserved"),
        pytest.param("255.255.255.255", False, id="broadcast"),
        pytest.param("192.0.2.1", False, id="documentation"),
        pytest.param("::ffff:127.0.0.1", False, id="mapped-loopback"),
        pytest.param("::ffff:10.1.2.3", False, id="mapped-private"),
        pytest.param("2002:7f00:1::", False, id="6to4-loopback"),
        pytest.param("64:ff9b::a9fe:a9fe", False, id="nat64-link-local"),
        pytest.param("2001:0:4136:e378:8000:63bf:f5ff:fffe", False, id="teredo-private"),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("host", "resolves_to"),
    [
        pytest.param("127.0.0.1", None, id="loopback-literal"),
        pytest.param("localhost", None, id="localhost-real-lookup"),
        pytest.param("[::ffff:127.0.0.1]", None, id="mapped-literal"),
        pytest.param("internal.test", ["10.20.30.40"], id="name-to-private"),
        pytest.param("metadata.test", ["169.254.169.254"], id="name-to-link-local"),
        pytest.param("ula.test", ["fd12:3456::1"], id="name-to-unique-local"),
        pytest.param("loop.test", ["127.0.0.1"], id="name-to-loopback"),
        pytest.param("mixed.test", ["93.184.215.14", "10.0.0.1"], id="one-private-among-public"),
    ],
)
def test_addresses_that_are_not_public_are_refused_before_connecting(
    server: DocumentServer, trusted: str, host: str, resolves_to: list[str] | None
) -> None:
    options: dict[str, Any] = {}
    if resolves_to is not None:
        options["resolver"] = names({host: resolves_to})
    fetcher = SafeFetcher(ca_file=trusted, **options)
    with pytest.raises(FetchRefused, match=r"^the host resolves to an address that is not public$"):
        fetcher.fetch(f"https://{host}:{server.port}/doc")
    assert server.hits["/doc"] == 0
    assert server.sni == []  # not even a TLS handshake


def test_a_name_that_does_not_resolve(trusted: str) -> None:
    fetcher = SafeFetcher(ca_file=trusted, resolver=names({}))
    with pytest.raises(FetchRefused, match="does not resolve"):
        fetcher.fetch("https://nowhere.test/client.json")


def test_a_lookup_that_hangs_ends_at_the_deadline(trusted: str) -> None:
    released = threading.Event()

    def stuck(host: str, port: int) -> list[str]:
        released.wait()
        return ["93.184.215.14"]

    try:
        fetcher = SafeFetcher(ca_file=trusted, resolver=stuck, timeout=0.2)
        with pytest.raises(FetchRefused, match=r"took longer than 0\.2 s"):
            fetcher.fetch("https://slow-dns.test/client.json")
    finally:
        released.set()


# --- what the server answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param(
            Answer(b"", 302, None, headers={"Location": "/doc"}),
            "the server answered with a redirect, which is not followed",
            id="redirect",
        ),
        pytest.param(
            Answer(b"", 301, None, headers={"Location": "https://169.254.169.254/"}),
            "the server answered with a redirect, which is not followed",
            id="redirect-elsewhere",
        ),
        pytest.param(Answer(b"{}", 404), "the server answered with status 404, not 200", id="404"),
        pytest.param(Answer(b"{}", 204), "the server answered with status 204, not 200", id="204"),
        pytest.param(
            Answer(b"{}", content_type="text/html"),
            "the answer's Content-Type is not application/json",
            id="html",
        ),
        pytest.param(
            Answer(b"{}", content_type=None),
            "the answer's Content-Type is not application/json",
            id="no-content-type",
        ),
        pytest.param(
            Answer(b"{}", content_type="application/json-seq"),
            "the answer's Content-Type is not application/json",
            id="json-lookalike",
        ),
        pytest.param(
            Answer(b" " * 5121), "the body is larger than 5120 bytes", id="oversized-with-length"
        ),
        pytest.param(
            Answer(b" " * 70000, length=False),
            "the body is larger than 5120 bytes",
            id="oversized-without-length",
        ),
        pytest.param(
            Answer(b"{}", headers={"Content-Length": "9999999"}, length=False),
            "the body is larger than 5120 bytes",
            id="announced-oversized",
        ),
    ],
)
def test_answers_refused(server: DocumentServer, trusted: str, answer: Answer, reason: str) -> None:
    server.answers["/bad"] = answer
    with pytest.raises(FetchRefused) as refused:
        lab_fetcher(trusted).fetch(server.url("/bad"))
    assert str(refused.value) == reason
    assert server.hits["/doc"] == 0  # the redirect was not followed


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Answer(b"{" + b" " * 100 + b"}", stall_after=10), id="slow-body"),
        pytest.param(Answer(stall_before_head=True), id="slow-head"),
    ],
)
def test_a_slow_server_ends_at_the_deadline(
    server: DocumentServer, trusted: str, answer: Answer
) -> None:
    server.answers["/slow"] = answer
    with pytest.raises(FetchRefused, match=r"^the fetch took longer than 0\.3 s$"):
        lab_fetcher(trusted, timeout=0.3).fetch(server.url("/slow"))


# --- TLS ---------------------------------------------------------------------------------------


def test_a_certificate_from_an_unknown_ca_is_refused(
    server: DocumentServer, tmp_path: Path
) -> None:
    other = str(ca_file(trustme.CA(), tmp_path / "other"))
    for fetcher in (
        SafeFetcher(ca_file=other, allow_private=True),
        SafeFetcher(allow_private=True),  # the system's CAs do not know the test CA either
    ):
        with pytest.raises(FetchRefused, match="TLS certificate could not be verified"):
            fetcher.fetch(server.url("/doc"))
    assert server.hits["/doc"] == 0


def test_a_certificate_for_another_name_is_refused(server: DocumentServer, trusted: str) -> None:
    fetcher = lab_fetcher(trusted, resolver=names({"impostor.test": ["127.0.0.1"]}))
    with pytest.raises(FetchRefused, match="TLS certificate could not be verified"):
        fetcher.fetch(server.url("/doc", host="impostor.test"))
    assert server.hits["/doc"] == 0


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://localhost/doc", id="plain-http"),
        pytest.param("ftp://localhost/doc", id="ftp"),
        pytest.param("https:///doc", id="no-host"),
        pytest.param("https://localhost:99999/doc", id="bad-port"),
    ],
)
def test_only_https_urls(trusted: str, url: str) -> None:
    with pytest.raises(FetchRefused, match=r"^the URL is"):
        lab_fetcher(trusted).fetch(url)


def test_a_closed_port(trusted: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchRefused, match=r"^the server could not be connected to$"):
        lab_fetcher(trusted).fetch(f"https://localhost:{port}/doc")
