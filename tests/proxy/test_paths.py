"""The path matched is exactly the path forwarded: tricks are refused with 400 (raw sockets,
so no client library normalises the request line first)."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequestPath
from gateway.proxy.paths import decode_path, encode_path, upstream_target
from tests.support.cases import TRICKS
from tests.support.proxy import GatewayFactory, raw_request


@pytest.mark.parametrize("raw", TRICKS)
def test_tricks_refused(raw: str) -> None:
    with pytest.raises(BadRequestPath):
        decode_path(raw.encode("latin-1"))


@pytest.mark.parametrize(
    ("raw", "decoded", "forwarded"),
    [
        pytest.param("/orders/7", "/orders/7", "/orders/7", id="plain"),
        pytest.param("/orders/", "/orders/", "/orders/", id="trailing-slash"),
        pytest.param("/ord%65rs/7", "/orders/7", "/orders/7", id="encoded-unreserved"),
        pytest.param("/orders/a%20b", "/orders/a b", "/orders/a%20b", id="space"),
        pytest.param("/orders/%C3%A9", "/orders/é", "/orders/%C3%A9", id="utf8"),
        pytest.param("/orders/a;b", "/orders/a;b", "/orders/a%3Bb", id="semicolon"),
        pytest.param("/orders/7;v=1", "/orders/7;v=1", "/orders/7%3Bv=1", id="parameter"),
        pytest.param("/orders/x;..", "/orders/x;..", "/orders/x%3B..", id="dot-dot-parameter"),
        pytest.param("/orders/..x;y", "/orders/..x;y", "/orders/..x%3By", id="dots-in-a-name"),
        pytest.param("/orders/a%3Bb", "/orders/a;b", "/orders/a%3Bb", id="encoded-semicolon"),
        pytest.param("/orders/.hidden", "/orders/.hidden", "/orders/.hidden", id="dot-name"),
        pytest.param("/orders/a%25b", "/orders/a%b", "/orders/a%25b", id="percent"),
    ],
)
def test_decoded_once_and_forwarded_canonically(raw: str, decoded: str, forwarded: str) -> None:
    assert decode_path(raw.encode()) == decoded
    assert encode_path(decoded) == forwarded
    # the request-target: the raw bytes where they are already canonical, else re-encoded
    assert upstream_target(raw.encode(), decoded, decoded, b"") == forwarded.encode()
    assert upstream_target(raw.encode(), decoded, decoded, b"a=1") == forwarded.encode() + b"?a=1"


@pytest.mark.parametrize(
    ("raw", "upstream_path", "target"),
    [
        pytest.param("/orders/7", "/v1/orders/7", b"/v1/orders/7", id="base-path"),
        pytest.param("/orders/a%20b", "/a b", b"/a%20b", id="stripped-prefix"),
        pytest.param("/orders/7", "/7", b"/7", id="stripped-canonical"),
    ],
)
def test_a_rewritten_path_is_encoded_not_passed_raw(
    raw: str, upstream_path: str, target: bytes
) -> None:
    assert upstream_target(raw.encode(), decode_path(raw.encode()), upstream_path, b"") == target


@pytest.mark.parametrize("raw", TRICKS[:-1])
async def test_tricks_answer_400_and_never_reach_the_upstream(
    gateway: GatewayFactory, echo: str, raw: str
) -> None:
    gw = await gateway(f'[[routes]]\npath = "/"\npublic = true\nupstream = "{echo}"\n')
    response = await raw_request(gw.port, raw)
    assert response.status == 400
    assert b'"error": "invalid_request"' in response.body


async def test_query_forwarded_unchanged(gateway: GatewayFactory, echo: str) -> None:
    gw = await gateway(f'[[routes]]\npath = "/orders"\npublic = true\nupstream = "{echo}"\n')
    response = await raw_request(gw.port, "/orders/%7E7?b=%2F..%2F&a=1+2&a=%zz&access_token=x")
    assert response.status == 200
    assert b'"path": "/orders/~7"' in response.body
    assert b'"query": "b=%2F..%2F&a=1+2&a=%zz&access_token=x"' in response.body
