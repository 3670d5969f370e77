"""https:// upstreams (verification on by default, SNI, ``tls_ca``, ``tls_verify = false``) and
the config keys of the upstream client: per-route TLS settings, the pool's limits, ``Origin``."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.config import Config, PoolConfig
from gateway.errors import ConfigError, UpstreamUnavailable
from gateway.proxy.forwarder import Origin
from gateway.proxy.routes import RouteTable
from tests.support.pki import make_pki
from tests.support.upstreams import OK_2, Upstreams, fetch, read_request

WriteConfig = Callable[[str], Config]


async def test_an_upstream_verified_with_tls_ca_is_reached_with_sni(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    ca_file, server, offered = make_pki(tmp_path, ("localhost",))
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append((await read_request(reader))[0])
            writer.write(OK_2)

    up = await upstreams.start(record, tls=server)
    origin = Origin.from_url(f"https://localhost:{up.port}", tls_ca=str(ca_file))
    forwarder = await upstreams.forwarder()
    for _ in range(2):
        answer, received = await fetch(forwarder, origin)
        assert (answer.status, received) == (200, b"ok")
    assert offered == ["localhost"] and up.accepted == 1  # kept alive over TLS too
    assert heads[0].startswith(b"GET / HTTP/1.1\r\nHost: localhost:%d\r\n" % up.port)


async def test_a_large_body_over_tls(upstreams: Upstreams, tmp_path: Path) -> None:
    ca_file, server, _ = make_pki(tmp_path, ("localhost",))
    size = 8 * 1024 * 1024

    async def echo_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    up = await upstreams.start(echo_length, tls=server)
    origin = Origin.from_url(f"https://localhost:{up.port}", tls_ca=str(ca_file))

    async def body() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"t" * (1024 * 1024)

    answer, received = await fetch(await upstreams.forwarder(), origin, "PUT", [], body())
    assert (answer.status, len(received)) == (200, size)


@pytest.mark.parametrize(
    ("names", "use_ca"),
    [
        pytest.param(("localhost",), False, id="unknown-ca"),
        pytest.param(("other.test",), True, id="wrong-name"),
    ],
)
async def test_an_unverifiable_upstream_is_refused(
    upstreams: Upstreams, tmp_path: Path, names: tuple[str, ...], use_ca: bool
) -> None:
    ca_file, server, _ = make_pki(tmp_path, names)

    async def unreached(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    up = await upstreams.start(unreached, tls=server)
    origin = Origin.from_url(f"https://localhost:{up.port}", str(ca_file) if use_ca else None)
    forwarder = await upstreams.forwarder()
    with pytest.raises(UpstreamUnavailable) as caught:
        await forwarder.open(origin, "GET", b"/", [], None)
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_tls_verify_false_accepts_any_certificate(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    _, server, offered = make_pki(tmp_path, ("other.test",))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK_2)

    up = await upstreams.start(answer, tls=server)
    origin = Origin.from_url(f"https://localhost:{up.port}", tls_verify=False)
    response, _ = await fetch(await upstreams.forwarder(), origin)
    assert response.status == 200 and offered == ["localhost"]


# --- Origin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "host_header"),
    [
        pytest.param("http://api.test", "api.test", 80, b"api.test", id="http-default"),
        pytest.param("http://api.test:80/v1", "api.test", 80, b"api.test", id="explicit-80"),
        pytest.param("https://API.test:443", "api.test", 443, b"api.test", id="https-default"),
        pytest.param("https://api.test:8443", "api.test", 8443, b"api.test:8443", id="port"),
        pytest.param("http://[::1]:9001", "::1", 9001, b"[::1]:9001", id="ipv6"),
        pytest.param("http://bücher.test", "bücher.test", 80, b"xn--bcher-kva.test", id="idn"),
    ],
)
def test_origin_from_url(url: str, host: str, port: int, host_header: bytes) -> None:
    origin = Origin.from_url(url)
    assert (origin.host, origin.port, origin.host_header) == (host, port, host_header)
    assert origin.head_tail == b" HTTP/1.1\r\nHost: " + host_header + b"\r\n"
    https = url.startswith("https")
    assert (origin.ssl is not None, origin.server_hostname) == (https, host if https else None)


def test_https_verifies_against_the_system_store_by_default() -> None:
    context = Origin.from_url("https://api.test").ssl
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


# --- config ------------------------------------------------------------------------------


def tls_route(upstream: str, extra: str = "", name: str = "secure") -> str:
    return (
        f'[[routes]]\nname = "{name}"\npath = "/{name}"\npublic = true\n'
        f'upstream = "{upstream}"\n{extra}'
    )


def test_tls_ca_resolves_against_the_config_folder(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    ca_file, _, _ = make_pki(tmp_path, ("localhost",))
    config = write_config(tls_route("https://localhost:8443", f'tls_ca = "{ca_file.name}"\n'))
    assert config.routes[0].tls_ca == str(ca_file)
    [route] = [RouteTable.from_config(config.routes).match(None, "/secure", "GET")]
    assert route.upstream.ssl is not None and route.upstream.server_hostname == "localhost"
    assert (route.upstream.scheme, route.upstream.port) == ("https", 8443)


def test_routes_to_one_upstream_share_one_origin(write_config: WriteConfig) -> None:
    config = write_config(
        tls_route("http://127.0.0.1:9001/a", name="a")
        + tls_route("http://127.0.0.1:9001/b", name="b")
    )
    table = RouteTable.from_config(config.routes)
    assert table.match(None, "/a", "GET").upstream is table.match(None, "/b", "GET").upstream


def test_tls_verify_false_is_logged_once_naming_the_route(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tls_route("https://localhost:8443", "tls_verify = false\n"))
    with caplog.at_level(logging.WARNING, "gateway.proxy"):
        route = RouteTable.from_config(config.routes).match(None, "/secure", "GET")
    [record] = [r for r in caplog.records if "tls_verify" in r.getMessage()]
    assert record.levelno == logging.WARNING and "'secure'" in record.getMessage()
    assert route.upstream.ssl is not None and route.upstream.ssl.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("upstream", "extra", "key"),
    [
        pytest.param("https://h:1", 'tls_ca = "missing.pem"\n', "routes[0].tls_ca", id="missing"),
        pytest.param("http://h:1", 'tls_ca = "{ca}"\n', "routes[0].tls_ca", id="ca-on-http"),
        pytest.param("http://h:1", "tls_verify = false\n", "routes[0].tls_verify", id="http"),
        pytest.param(
            "https://h:1", 'tls_ca = "{ca}"\ntls_verify = false\n', "routes[0].tls_ca", id="both"
        ),
        pytest.param("https://h:1", "tls_verify = 0\n", "routes[0].tls_verify", id="not-bool"),
        pytest.param("http://h:99999", "", "routes[0].upstream", id="bad-port"),
        pytest.param("http://u:p@h:1", "", "routes[0].upstream", id="credentials"),
        pytest.param("https://u@h:1", "", "routes[0].upstream", id="user-only"),
    ],
)
def test_bad_tls_settings_name_the_key(
    write_config: WriteConfig, tmp_path: Path, upstream: str, extra: str, key: str
) -> None:
    ca_file, _, _ = make_pki(tmp_path, ("localhost",))
    with pytest.raises(ConfigError, match=re.escape(f": {key}: ")):
        write_config(tls_route(upstream, extra.format(ca=ca_file)))


def test_a_ca_file_that_is_not_pem_stops_the_start(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    config = write_config(tls_route("https://localhost:8443", 'tls_ca = "junk.pem"\n'))
    with pytest.raises(ConfigError, match="'secure'"):
        RouteTable.from_config(config.routes)


def test_pool_keys_in_proxy(write_config: WriteConfig) -> None:
    config = write_config(
        "[proxy]\nmax_connections_per_origin = 8\npool_idle_timeout = 2\npool_max_age = 30\n"
    )
    assert config.proxy.pool == PoolConfig(8, 2.0, 30.0)
    assert write_config("").proxy.pool == PoolConfig(256, 15.0, 300.0)


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        pytest.param("max_connections_per_origin = 0", "must be positive", id="no-connections"),
        pytest.param("pool_idle_timeout = -1", "must be positive", id="negative-idle"),
        pytest.param("pool_max_age = 0", "must be positive", id="zero-age"),
        pytest.param('max_connections_per_origin = "8"', "must be an integer", id="string"),
    ],
)
def test_bad_pool_keys_name_the_key(write_config: WriteConfig, toml: str, problem: str) -> None:
    key = toml.split(" = ")[0]
    with pytest.raises(ConfigError, match=rf"proxy\.{key}: {problem}"):
        write_config(f"[proxy]\n{toml}\n")
