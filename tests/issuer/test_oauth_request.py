"""The issuer's form reader (``parse_form``) returns what Starlette's form parser would, for any
body: the endpoints answer exactly as they did when they read ``await request.form()``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from starlette.datastructures import Headers
from starlette.formparsers import FormParser

from gateway.issuer.oauth_request import MAX_FORM_FIELDS, parse_form
from tests.support.issuer import TOKEN, oauth_error

FORM = "application/x-www-form-urlencoded"


def starlette_form(body: bytes) -> list[tuple[str, str]]:
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    async def parse() -> list[tuple[str, str]]:
        form = await FormParser(Headers(), chunks(), max_fields=MAX_FORM_FIELDS).parse()
        return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]

    return asyncio.run(parse())


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"grant_type=client_credentials&scope=a+b", id="plain"),
        pytest.param(b"=&==&&=x&x", id="degenerate-pairs"),
        pytest.param(b"&a", id="leading-ampersand"),
        pytest.param(b"a&", id="trailing-ampersand"),
        pytest.param(b"a&&&b=", id="runs-of-ampersands"),
        pytest.param(b"a==b=c", id="equals-in-value"),
        pytest.param(b"a=1;b=2", id="semicolon-is-not-a-separator"),
        pytest.param(b"a=%2B+%20", id="plus-and-escapes"),
        pytest.param(b"%ff%fe=%c3%28&token=%e2%82", id="invalid-utf8-escapes"),
        pytest.param(b"x=%zz%2&y=%", id="broken-escapes"),
        pytest.param("grant_type=☃&token=☃".encode(), id="raw-utf8"),
        pytest.param(b"\x00\x01=\xff&\xfe", id="binary"),
        pytest.param(b"grant_type=password%00", id="nul"),
        pytest.param(b"a=1&a=2&a=3", id="repeats-kept-in-order"),
    ],
)
def test_same_pairs_as_starlette(body: bytes) -> None:
    assert parse_form(body) == starlette_form(body)


def test_same_pairs_as_starlette_on_random_bodies() -> None:
    rng = random.Random(6749)
    alphabet = [b"&", b"=", b"+", b"%", b"2", b"B", b"f", b"F", b"a", b"\xc3", b"\xa9", b"\x00"]
    for _ in range(2000):
        body = b"".join(rng.choices(alphabet, k=rng.randrange(24)))
        assert parse_form(body) == starlette_form(body), body


def test_too_many_fields_is_refused() -> None:
    body = b"&".join(b"f%d=v" % i for i in range(MAX_FORM_FIELDS + 1))
    with pytest.raises(InvalidRequestError):
        parse_form(body)
    assert len(parse_form(body.rpartition(b"&")[0])) == MAX_FORM_FIELDS


def test_a_body_over_a_mebibyte_is_invalid_request(client, confidential) -> None:
    body = b"grant_type=client_credentials&scope=" + b"x" * (1 << 20)
    response = client.post(
        TOKEN, content=body, headers={"content-type": FORM}, auth=confidential.auth
    )
    oauth_error(response, 400, "invalid_request")
