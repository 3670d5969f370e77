"""Hypothesis strategies for hostile HTTP requests: form bodies, query strings, header values,
cookies, paths and methods, mixing meaningful values (real client ids, grant types, seeded
secrets) with arbitrary text so that the fuzzer gets past the first check now and then."""

from __future__ import annotations

import base64
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

FORM = "application/x-www-form-urlencoded"

#: any text, control characters and lone surrogates' neighbours included
junk = st.text(max_size=40)
#: what can go in an HTTP header value: Latin-1 without CR, LF or NUL
header_text = st.text(
    st.characters(min_codepoint=0x01, max_codepoint=0xFF, blacklist_characters="\r\n"),
    max_size=60,
)
#: RFC 9110 §5.5: what a parser lets through (visible characters, spaces, tabs, obs-text)
field_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
    | st.just("\t"),
    max_size=60,
)
token_chars = st.text(
    st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
    ),
    min_size=1,
    max_size=12,
)

PARAMETERS = (
    "grant_type",
    "client_id",
    "client_secret",
    "code",
    "redirect_uri",
    "code_verifier",
    "code_challenge",
    "code_challenge_method",
    "refresh_token",
    "username",
    "password",
    "scope",
    "state",
    "token",
    "token_type_hint",
    "response_type",
)
MEANINGFUL = (
    "authorization_code",
    "password",
    "refresh_token",
    "client_credentials",
    "code",
    "token",
    "access_token",
    "S256",
    "plain",
    "orders:read",
    "orders:read profile",
    "admin",
    "http://127.0.0.1:9999/callback",
    "alice@example.com",
    "",
)
CONTENT_TYPES = (
    FORM,
    FORM + "; charset=utf-8",
    "APPLICATION/X-WWW-FORM-URLENCODED",
    "multipart/form-data; boundary=x",
    "application/json",
    "text/plain",
    "",
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")


def values(*known: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from((*MEANINGFUL, *known)), junk)


def pairs(*known: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    names = st.one_of(st.sampled_from(PARAMETERS), junk)
    return st.lists(st.tuples(names, values(*known)), max_size=8)


def encoded(items: list[tuple[str, str]]) -> str:
    return urlencode(items, quote_via=quote)


def form_bodies(*known: str) -> st.SearchStrategy[bytes]:
    """Well-formed forms mostly; now and then raw bytes or a doubly repeated parameter."""
    return st.one_of(
        pairs(*known).map(lambda items: encoded(items).encode()),
        st.binary(max_size=200),
        junk.map(lambda text: text.encode("utf-8", "surrogatepass")),
    )


def basic(client_id: str, secret: str) -> str:
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def authorizations(ids: tuple[str, ...], secrets: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Authorization header values: Basic with real or wrong ids and secrets, Bearer, junk."""
    some_id = st.one_of(st.sampled_from(ids), junk)
    some_secret = st.one_of(st.sampled_from(secrets), junk)
    return st.one_of(
        st.builds(basic, some_id, some_secret),
        st.sampled_from(secrets).map(lambda s: "Bearer " + s),
        st.builds(lambda raw: "Basic " + base64.b64encode(raw).decode(), st.binary(max_size=40)),
        header_text,
    )


def cookies(name: str, value: st.SearchStrategy[str] = header_text) -> st.SearchStrategy[str]:
    return st.one_of(value.map(lambda text: f"{name}={text}"), value)
