"""RFC 7591 §2 client metadata as ``parse_metadata`` reads it: whatever JSON a client sends,
the answer is a registration that keeps every rule or one of RFC 7591 §3.2.2's two errors, with
a description in RFC 6749's error-text alphabet, never another exception."""

from __future__ import annotations

from typing import Any

import pytest
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.accounts import redirect_uri_problem
from gateway.issuer.client_metadata import (
    REGISTRABLE_GRANT_TYPES,
    ClientMetadata,
    parse_metadata,
)

ALLOWED = frozenset({"mcp", "orders:read"})
FIELDS = (
    "redirect_uris",
    "client_name",
    "client_uri",
    "grant_types",
    "response_types",
    "token_endpoint_auth_method",
    "scope",
    "application_type",
)
MEANINGFUL = st.sampled_from(
    [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "password",
        "code",
        "token",
        "none",
        "client_secret_basic",
        "client_secret_post",
        "web",
        "native",
        "mcp",
        "orders:read",
        "mcp orders:read",
        "http://127.0.0.1/cb",
        "http://localhost:8080/cb",
        "https://agent.example/cb",
        "https://localhost/cb",
        "com.example.app:/cb",
        "javascript:alert(1)",
        "http://[::1]/cb",
        "https://agent.example/#x",
        "",
    ]
)
scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
value = st.recursive(
    scalar | MEANINGFUL,
    lambda inner: (
        st.lists(inner | MEANINGFUL, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
#: registrations that are sound, for the changes below to start from
BASES = [
    {"redirect_uris": ["https://agent.example/cb"]},
    {
        "redirect_uris": ["http://127.0.0.1/cb"],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    },
    {"grant_types": ["client_credentials"], "scope": "mcp"},
]
changes = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8),
    MEANINGFUL | st.lists(MEANINGFUL, max_size=3) | value,
    max_size=3,
)
documents = st.builds(lambda base, change: {**base, **change}, st.sampled_from(BASES), changes)
#: RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E
NQSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


def storable(text: str) -> bool:
    return "\x00" not in text and text.isprintable()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_document_is_a_sound_registration_or_a_registration_error(document: dict[str, Any]):
    try:
        metadata = parse_metadata(document, ALLOWED)
    except (InvalidClientMetadataError, InvalidRedirectURIError) as error:
        assert error.description and NQSCHAR.issuperset(error.description)
        assert error.status_code == 400
        return
    assert isinstance(metadata, ClientMetadata)
    assert set(metadata.grant_types) <= set(REGISTRABLE_GRANT_TYPES)
    assert ("authorization_code" in metadata.grant_types) == (metadata.response_types == ("code",))
    assert not (metadata.public and "client_credentials" in metadata.grant_types)
    assert set(metadata.scope.split()) <= ALLOWED
    for uri in metadata.redirect_uris:
        assert redirect_uri_problem(uri) is None and storable(uri)
    assert storable(metadata.client_name) and 0 < len(metadata.client_name) <= 200
    assert metadata.client_uri is None or storable(metadata.client_uri)


def test_the_defaults_are_rfc_7591s_and_openid_connects() -> None:
    metadata = parse_metadata({"redirect_uris": ["https://agent.example/cb"]}, ALLOWED)
    assert metadata == ClientMetadata(
        redirect_uris=("https://agent.example/cb",),
        client_name="Unnamed client",
        client_uri=None,
        grant_types=("authorization_code",),
        response_types=("code",),
        token_endpoint_auth_method="client_secret_basic",
        scope="",
        application_type="web",
    )


@pytest.mark.parametrize(
    ("uri", "application_type", "accepted"),
    [
        pytest.param("https://agent.example/cb", "web", True, id="web-https"),
        pytest.param("https://agent.localhost/cb", "web", False, id="web-localhost-name"),
        pytest.param("https://[::1]/cb", "web", False, id="web-ipv6-loopback"),
        pytest.param("https://LOCALHOST./cb", "web", False, id="web-localhost-spelled"),
        pytest.param("http://127.0.0.1:5000/cb", "native", True, id="native-loopback-ip"),
        pytest.param("http://localhost/cb", "native", True, id="native-localhost"),
        pytest.param("cursor://anysphere.cursor-mcp/cb", "native", True, id="native-scheme"),
        pytest.param("https://agent.example/cb", "native", False, id="native-https"),
        pytest.param("vbscript:x", "native", False, id="native-unsafe-scheme"),
    ],
)
def test_redirect_uris_by_application_type(uri: str, application_type: str, accepted: bool):
    document = {"redirect_uris": [uri], "application_type": application_type}
    if accepted:
        assert parse_metadata(document, ALLOWED).redirect_uris == (uri,)
    else:
        with pytest.raises(InvalidRedirectURIError):
            parse_metadata(document, ALLOWED)
