"""``dpop_bound_access_tokens`` (RFC 9449 §5.2) in a Client ID Metadata Document: a boolean;
true, and the client stored from the document must send a proof with every token request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway.issuer.client_documents import DocumentRefused, MetadataDocumentClients, read_document
from gateway.issuer.fetch_cache import FetchCache
from gateway.issuer.fetcher import SafeFetcher
from gateway.storage import Storage
from tests.support.documents import Answer, DocumentServer, ca_file, serving

URL = "https://agent.example/oauth/client.json"
PATH = "/oauth/client.json"
SCOPES = frozenset({"orders:read"})


def document(url: str = URL, **changes: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Research Agent",
        "redirect_uris": ["http://127.0.0.1:9999/callback"],
        "token_endpoint_auth_method": "none",
        **changes,
    }


def read(**changes: Any) -> Any:
    return read_document(URL, json.dumps(document(**changes)).encode(), SCOPES)


def test_true_marks_the_client() -> None:
    client = read(dpop_bound_access_tokens=True)
    assert client.require_dpop is True
    assert client.columns()["require_dpop"] is True


@pytest.mark.parametrize("changes", [{}, {"dpop_bound_access_tokens": False}])
def test_false_or_omitted_does_not(changes: dict[str, Any]) -> None:
    assert read(**changes).columns()["require_dpop"] is False


@pytest.mark.parametrize("value", ["true", 1, None, [True]])
def test_a_value_that_is_not_a_boolean_refuses_the_document(value: Any) -> None:
    with pytest.raises(DocumentRefused, match="dpop_bound_access_tokens"):
        read(dpop_bound_access_tokens=value)


@pytest.fixture
def server() -> Iterator[tuple[DocumentServer, trustme.CA]]:
    ca = trustme.CA()
    with serving(ca) as running:
        yield running, ca


def test_the_stored_client_requires_dpop(
    storage: Storage, server: tuple[DocumentServer, trustme.CA], tmp_path: Path
) -> None:
    documents, ca = server
    url = documents.url(PATH)
    documents.answers[PATH] = Answer.json(document(url, dpop_bound_access_tokens=True))
    fetcher = SafeFetcher(ca_file=str(ca_file(ca, tmp_path / "ca")), allow_private=True)
    lookup = MetadataDocumentClients(storage, fetcher, SCOPES, cache=FetchCache())
    client = lookup(url)
    assert client is not None and client.require_dpop is True
