"""The upstream client's failures become the gateway's at the ``Forwarder``, in one table, for
``open()`` and the body stream alike; and the client (``gateway.proxy.http1``) stands alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from gateway.proxy.forwarder import translated
from gateway.proxy.http1.errors import (
    ConnectTimeout,
    Http1Error,
    IncompleteBody,
    ProtocolError,
    RequestError,
)
from tests.support.upstreams import Upstreams, read_request, replies


def test_the_table_covers_every_failure_of_the_client() -> None:
    """Each of the client's own errors has its translation (a new one would fall to the
    catch-all and lose its description)."""
    expected: list[tuple[Http1Error, type[GatewayError], str]] = [
        (RequestError("x"), UpstreamUnavailable, "the request cannot be sent upstream"),
        (ProtocolError("x"), UpstreamUnavailable, "the upstream sent an invalid response"),
        (ConnectTimeout("x"), UpstreamTimeout, "no connection to the upstream in time"),
        (IncompleteBody("x"), UpstreamUnavailable, "the upstream broke off its response"),
    ]
    assert {type(exc) for exc, _, _ in expected} == set(_leaves(Http1Error))
    for exc, error, description in expected:
        mapped = translated(exc)
        assert type(mapped) is error and mapped.description == description


def _leaves(cls: type) -> list[type]:
    subclasses = cls.__subclasses__()
    return [leaf for sub in subclasses for leaf in _leaves(sub)] if subclasses else [cls]


async def test_open_maps_the_clients_errors(upstreams: Upstreams) -> None:
    up = await upstreams.start(replies(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"))
    forwarder = await upstreams.forwarder()
    with pytest.raises(UpstreamUnavailable) as caught:
        await forwarder.open(up.origin, "GET", b"/", [(b"x-a", b"1\r\nx-b: 2")], None)
    assert caught.value.description == "the request cannot be sent upstream"
    assert isinstance(caught.value.__cause__, RequestError)
    with pytest.raises(UpstreamUnavailable) as caught:
        await forwarder.open(up.origin, "GET", b"/", [], None)
    assert caught.value.description == "the upstream sent an invalid response"
    assert isinstance(caught.value.__cause__, ProtocolError)


async def test_a_failure_while_streaming_the_body_is_mapped(upstreams: Upstreams) -> None:
    """The body's failure is the gateway's too, its cause kept for the log (httpx maps
    httpcore's errors for the response stream as it does for the request)."""

    async def reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await writer.drain()
        writer.transport.abort()  # a reset, mid-body

    up = await upstreams.start(reset_mid_body)
    forwarder = await upstreams.forwarder()
    response = await forwarder.open(up.origin, "GET", b"/", [], None)
    chunks = response.chunks()
    assert await anext(chunks) == b"hello"
    with pytest.raises(UpstreamUnavailable) as caught:
        await anext(chunks)
    response.close()
    assert caught.value.description == "the upstream broke off its response"
    cause = caught.value.__cause__
    assert isinstance(cause, IncompleteBody)
    assert isinstance(cause.__cause__, OSError)  # what the socket said, for the log


def test_the_client_imports_nothing_else_of_the_gateway() -> None:
    """``gateway.proxy.http1`` loads none of the gateway's modules but its own packages."""
    modules = ["connection", "errors", "flow", "origin", "pool", "request", "response"]
    script = (
        "import sys\n"
        + "".join(f"import gateway.proxy.http1.{name}\n" for name in modules)
        + "print('\\n'.join(m for m in sys.modules if m.startswith('gateway')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    outside = [m for m in loaded if not m.startswith("gateway.proxy.http1")]
    assert sorted(outside) == ["gateway", "gateway.proxy"]
