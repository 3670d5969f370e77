"""Client ID Metadata Documents (gateway/issuer/client_documents.py): the URL and document
rules, the lookup (fetched once, kept per Cache-Control, failures for a minute, one fetch for
concurrent callers, stored as a client), and the whole code flow of such a client through the
authorization pages and the token endpoint, against a real https server on 127.0.0.1."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
import trustme
from authlib.oauth2.rfc6749.errors import InvalidClientError
from starlette.testclient import TestClient

from gateway import accounts
from gateway.app import create_app
from gateway.config import Config, RegistrationConfig, RouteConfig
from gateway.errors import ConfigError
from gateway.issuer.client_documents import (
    ClientDocument,
    DocumentRefused,
    MetadataDocumentClients,
    read_document,
    url_problem,
)
from gateway.issuer.fetch_cache import FetchCache
from gateway.issuer.fetcher import SafeFetcher
from gateway.issuer.records import ClientLookup
from gateway.models import Client
from gateway.resources import registrable_scopes
from gateway.storage import Storage
from tests.support.documents import Answer, DocumentServer, ca_file, serving

PATH = "/oauth/client.json"
CALLBACK = "http://127.0.0.1:9999/callback"
PASSWORD = "a long enough password"
SCOPES = frozenset({"orders:read", "orders:write"})
#: put into refused documents: no answer may ever show it
MARKER = "zq-marker-7731"


#: refusals that several cases share
OTHER_ID = "has a client_id other than the URL it was fetched from"
SECRET = "holds a client_secret member: such a client has no secret"
NOT_NONE = "must have token_endpoint_auth_method none or private_key_jwt"
UNSHOWABLE = "has a client_name with characters that cannot be shown"
NOT_URIS = "has redirect_uris that is not a list of strings"
GRANTS = "has grant_types other than authorization_code, and refresh_token with it"
DOTS = "must not hold . or .. path segments"
CHARACTERS = "holds characters a URL may not"


def metadata(url: str, **changes: Any) -> dict[str, Any]:
    document = {
        "client_id": url,
        "client_name": "Research Agent",
        "client_uri": "https://agent.example/",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "orders:read",
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not None}


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[DocumentServer]:
    with serving(ca) as running:
        yield running


@pytest.fixture
def url(server: DocumentServer) -> str:
    """A client's URL, its document served there."""
    address = server.url(PATH)
    server.answers[PATH] = Answer.json(metadata(address))
    return address


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path) -> str:
    return str(ca_file(ca, tmp_path / "ca"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lookup(storage: Storage, trusted: str, clock: Clock) -> MetadataDocumentClients:
    fetcher = SafeFetcher(ca_file=trusted, allow_private=True)
    return MetadataDocumentClients(storage, fetcher, SCOPES, cache=FetchCache(clock=clock))


def refused(lookup: Callable[[str], Client | None], client_id: str) -> str:
    with pytest.raises(InvalidClientError) as raised:
        lookup(client_id)
    description = raised.value.description
    assert isinstance(description, str)
    return description


# --- the URL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param("https://agent.example/client.json", None, id="good"),
        pytest.param("https://agent.example:8443/a/b/c", None, id="port-and-deep-path"),
        pytest.param("http://agent.example/client.json", "must be an https:// URL", id="http"),
        pytest.param("HTTPS://agent.example/c", "must be an https:// URL", id="upper-scheme"),
        pytest.param("https://agent.example", "must have a path", id="no-path"),
        pytest.param("https://agent.example/", "must have a path", id="root-path"),
        pytest.param("https://agent.example/c#x", "must not carry a fragment", id="fragment"),
        pytest.param("https://agent.example/c#", "must not carry a fragment", id="empty-fragment"),
        pytest.param("https://agent.example/c?v=1", "must not carry a query", id="query"),
        pytest.param("https://u:p@agent.example/c", "must not carry credentials", id="userinfo"),
        pytest.param("https://u@agent.example/c", "must not carry credentials", id="user"),
        pytest.param("https://agent.example/a/../c", DOTS, id="dotdot"),
        pytest.param("https://agent.example/./c", DOTS, id="dot"),
        pytest.param("https://agent.example/a/%2E%2e/c", DOTS, id="escaped-dotdot"),
        pytest.param("https://agent.example/a/..", DOTS, id="trailing-dotdot"),
        pytest.param("https://:443/c", "has no host", id="no-host"),
        pytest.param("https://agent.example:99999/c", "is not a valid URL", id="bad-port"),
        pytest.param("https://agent.example/c d", CHARACTERS, id="space"),
        pytest.param("https://agent.example/caf\u00e9", CHARACTERS, id="non-ascii"),
        pytest.param("https://agent.example/c\x00", CHARACTERS, id="nul"),
        pytest.param(
            "https://agent.example/" + "a" * 500, "is longer than 512 characters", id="long"
        ),
    ],
)
def test_url_rules(url: str, problem: str | None) -> None:
    assert url_problem(url) == problem


@pytest.mark.parametrize(
    ("hosts", "allowed"),
    [
        pytest.param((), True, id="any"),
        pytest.param(("*.example.com",), True, id="glob"),
        pytest.param(("AGENTS.EXAMPLE.COM", "x.test"), True, id="case"),
        pytest.param(("example.com",), False, id="parent-only"),
        pytest.param(("*.example.org",), False, id="elsewhere"),
    ],
)
def test_host_globs(hosts: tuple[str, ...], allowed: bool) -> None:
    problem = url_problem("https://Agents.Example.com/c.json", hosts)
    assert problem == (None if allowed else "is on a host this server takes no clients from")


# --- the document ---------------------------------------------------------------------------

URL = "https://agent.example/client.json"


def read(**changes: Any) -> ClientDocument:
    return read_document(URL, json.dumps(metadata(URL, **changes)).encode(), SCOPES)


def test_a_good_document() -> None:
    document = read(redirect_uris=[CALLBACK, "https://agent.example/cb", CALLBACK])
    assert document == ClientDocument(
        client_id=URL,
        name="Research Agent",
        redirect_uris=(CALLBACK, "https://agent.example/cb"),
        grant_types=("authorization_code", "refresh_token"),
        scope="orders:read",
    )
    columns = document.columns()
    assert columns["token_endpoint_auth_method"] == "none"
    assert columns["first_party"] is False and columns["client_secret_hash"] is None


@pytest.mark.parametrize(
    ("changes", "scope", "grant_types"),
    [
        pytest.param({"scope": None}, "orders:read orders:write", None, id="no-scope-all-allowed"),
        pytest.param({"scope": "admin orders:write x"}, "orders:write", None, id="scope-within"),
        pytest.param({"scope": ""}, "", None, id="empty-scope"),
        pytest.param({"grant_types": None}, None, ("authorization_code",), id="rfc7591-default"),
        pytest.param({"response_types": None}, None, None, id="no-response-types"),
    ],
)
def test_optional_members(
    changes: dict[str, Any], scope: str | None, grant_types: tuple[str, ...] | None
) -> None:
    document = read(**changes)
    if scope is not None:
        assert document.scope == scope
    if grant_types is not None:
        assert document.grant_types == grant_types


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"\xff\xfe{}", "is not valid JSON", id="not-utf8"),
        pytest.param(b"{'client_id': 1}", "is not valid JSON", id="not-json"),
        pytest.param(b"[" * 3000 + b"]" * 3000, "is not valid JSON", id="deep-nesting"),
        pytest.param(b"[]", "is not a JSON object", id="array"),
        pytest.param(
            json.dumps(metadata(URL)).encode()[:-1] + f', "client_id": "{URL}"}}'.encode(),
            "names a member twice",
            id="repeated-member",
        ),
    ],
)
def test_documents_that_are_not_json_objects(body: bytes, reason: str) -> None:
    with pytest.raises(DocumentRefused, match=f"^{re.escape(reason)}$"):
        read_document(URL, body, SCOPES)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"client_id": None}, OTHER_ID, id="no-client-id"),
        pytest.param({"client_id": URL + "x"}, OTHER_ID, id="other-client-id"),
        pytest.param({"client_id": URL.upper()}, OTHER_ID, id="case-differs"),
        pytest.param({"client_secret": MARKER}, SECRET, id="secret"),
        pytest.param({"client_secret_expires_at": 0}, SECRET, id="secret-expiry"),
        pytest.param({"token_endpoint_auth_method": None}, NOT_NONE, id="no-method"),
        pytest.param({"token_endpoint_auth_method": "client_secret_basic"}, NOT_NONE, id="basic"),
        pytest.param(
            {"token_endpoint_auth_method": "private_key_jwt"},
            "asks for private_key_jwt without exactly one of jwks and jwks_uri",
            id="private-key-jwt-without-keys",
        ),
        pytest.param({"client_name": None}, "has no client_name", id="no-name"),
        pytest.param({"client_name": "   "}, "has no client_name", id="blank-name"),
        pytest.param({"client_name": 7}, "has no client_name", id="name-not-string"),
        pytest.param(
            {"client_name": "x" * 201},
            "has a client_name longer than 200 characters",
            id="long-name",
        ),
        pytest.param({"client_name": "Agent\u202e" + MARKER}, UNSHOWABLE, id="bidi-override"),
        pytest.param({"client_name": "Agent\n" + MARKER}, UNSHOWABLE, id="newline"),
        pytest.param({"redirect_uris": None}, "has no redirect_uris", id="no-redirect-uris"),
        pytest.param({"redirect_uris": []}, "has no redirect_uris", id="empty-redirect-uris"),
        pytest.param({"redirect_uris": CALLBACK}, NOT_URIS, id="redirect-uris-string"),
        pytest.param({"redirect_uris": [CALLBACK, 7]}, NOT_URIS, id="redirect-uri-number"),
        pytest.param(
            {"redirect_uris": [CALLBACK, f"javascript:alert('{MARKER}')"]},
            "has redirect_uris[1] that may not use the javascript: scheme",
            id="javascript",
        ),
        pytest.param(
            {"redirect_uris": [f"http://{MARKER}.example/cb"]},
            "has redirect_uris[0] that may use plain http only on loopback",
            id="plain-http",
        ),
        pytest.param(
            {"redirect_uris": [f"https://agent.example/cb#{MARKER}"]},
            "has redirect_uris[0] that must be absolute and carry no fragment",
            id="fragment",
        ),
        pytest.param(
            {"redirect_uris": ["/relative"]},
            "has redirect_uris[0] that must be absolute and carry no fragment",
            id="relative",
        ),
        pytest.param(
            {"grant_types": ["authorization_code", "client_credentials"]},
            GRANTS,
            id="client-credentials",
        ),
        pytest.param({"grant_types": ["password"]}, GRANTS, id="password"),
        pytest.param({"grant_types": ["refresh_token"]}, GRANTS, id="refresh-alone"),
        pytest.param(
            {"grant_types": "authorization_code"},
            "has grant_types that is not a list of strings",
            id="grant-types-string",
        ),
        pytest.param(
            {"response_types": ["token"]}, "has response_types other than code", id="implicit"
        ),
        pytest.param(
            {"response_types": []}, "has response_types other than code", id="no-response-type"
        ),
        pytest.param(
            {"scope": ["orders:read"]}, "has a scope that is not a string", id="scope-list"
        ),
    ],
)
def test_documents_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(DocumentRefused) as refusal:
        read(**changes)
    assert str(refusal.value) == reason
    assert MARKER not in str(refusal.value)


def test_registrable_scopes(config: Config) -> None:
    def route(path: str, **keys: Any) -> RouteConfig:
        return RouteConfig(path=path, upstream="http://127.0.0.1:9", **keys)

    routes = (
        route("/a", scopes=(("orders:read",), ("admin",))),
        route("/mcp", mcp=True, mcp_tool_scopes=(("delete_*", (("orders:delete",),)),)),
        route("/me", scopes=(("openid",),)),
        route("/open", public=True),
    )
    config = dataclasses.replace(config, routes=routes)
    assert registrable_scopes(config) == {"orders:read", "admin", "orders:delete"}
    chosen = RegistrationConfig(allowed_scopes=("orders:read", "openid"))
    chosen_config = dataclasses.replace(config, registration=chosen)
    assert registrable_scopes(chosen_config) == {"orders:read", "openid"}


def test_a_ca_file_that_is_not_pem_stops_the_start(
    config: Config, storage: Storage, tmp_path: Path
) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^registration\.ca_file: cannot be loaded"):
        create_app(with_documents(config, str(bad)))


# --- the lookup -------------------------------------------------------------------------------


def stored(storage: Storage, client_id: str) -> Client | None:
    with storage.session() as session:
        return accounts.find_client(session, client_id)


def test_a_document_makes_a_stored_public_client(
    lookup: MetadataDocumentClients, storage: Storage, server: DocumentServer, url: str
) -> None:
    client = lookup(url)
    assert client is not None
    assert (client.client_id, client.name, client.origin) == (
        url,
        "Research Agent",
        "metadata-document",
    )
    assert client.is_public and not client.first_party and not client.can_introspect
    assert client.redirect_uris == [CALLBACK] and client.scope == "orders:read"
    row = stored(storage, url)
    assert row is not None and row.origin == "metadata-document"
    # the issuer's plain lookup never answers it: only its document makes it a client
    assert ClientLookup(storage)(url) is None
    # other ids are looked up as before
    with storage.session() as session:
        other = accounts.create_client(
            session, "CLI app", [CALLBACK], ["authorization_code"], "", "none"
        )
    found = lookup(other.client.client_id)
    assert found is not None and found.origin == "cli"


def test_kept_per_cache_control(
    lookup: MetadataDocumentClients, server: DocumentServer, url: str, clock: Clock
) -> None:
    server.answers[PATH] = Answer.json(metadata(url), headers={"Cache-Control": "max-age=5"})
    for _ in range(3):
        lookup(url)
    assert server.hits[PATH] == 1
    clock.now += 59  # max-age=5 is kept a minute
    lookup(url)
    assert server.hits[PATH] == 1
    clock.now += 2
    lookup(url)
    assert server.hits[PATH] == 2


def test_kept_an_hour_when_unsaid(
    lookup: MetadataDocumentClients, server: DocumentServer, url: str, clock: Clock
) -> None:
    lookup(url)
    clock.now += 3599
    lookup(url)
    assert server.hits[PATH] == 1
    clock.now += 2
    lookup(url)
    assert server.hits[PATH] == 2


def test_a_new_fetch_refreshes_the_stored_client(
    lookup: MetadataDocumentClients,
    storage: Storage,
    server: DocumentServer,
    url: str,
    clock: Clock,
) -> None:
    lookup(url)
    changed = metadata(
        url, client_name="Research Agent 2", redirect_uris=["https://agent.example/cb"]
    )
    server.answers[PATH] = Answer.json(changed)
    client = lookup(url)
    assert client is not None and client.name == "Research Agent"  # still kept
    clock.now += 3601
    client = lookup(url)
    assert client is not None
    assert client.name == "Research Agent 2" and client.redirect_uris == [
        "https://agent.example/cb"
    ]
    row = stored(storage, url)
    assert row is not None and row.name == "Research Agent 2"
    with storage.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Client)) == 1


def test_a_failure_is_kept_a_minute(
    lookup: MetadataDocumentClients, server: DocumentServer, url: str, clock: Clock
) -> None:
    good = server.answers[PATH]
    server.answers[PATH] = Answer(b"gone", 404, "text/plain")
    reason = (
        "The client metadata document could not be fetched: "
        "the server answered with status 404, not 200."
    )
    assert refused(lookup, url) == reason
    server.answers[PATH] = good
    clock.now += 59
    assert refused(lookup, url) == reason
    assert server.hits[PATH] == 1
    clock.now += 2
    assert lookup(url) is not None
    assert server.hits[PATH] == 2


def test_an_invalid_document_is_kept_a_minute_too(
    lookup: MetadataDocumentClients, server: DocumentServer, url: str, clock: Clock
) -> None:
    server.answers[PATH] = Answer.json(metadata(url, client_secret=MARKER))
    reason = refused(lookup, url)
    assert reason == f"The client metadata document {SECRET}."
    refused(lookup, url)
    assert server.hits[PATH] == 1
    clock.now += 61
    refused(lookup, url)
    assert server.hits[PATH] == 2


def test_concurrent_callers_share_one_fetch(
    lookup: MetadataDocumentClients, server: DocumentServer, url: str
) -> None:
    gate = threading.Event()
    server.answers[PATH] = dataclasses.replace(server.answers[PATH], gate=gate)
    callers = 6
    found: list[Client | None] = []
    threads = [threading.Thread(target=lambda: found.append(lookup(url))) for _ in range(callers)]
    try:
        for thread in threads:
            thread.start()
        deadline = threading.Event()
        for _ in range(500):  # until every other caller waits for the one fetch in flight
            if lookup.cache.waiting(url) == callers - 1 and server.hits[PATH] == 1:
                break
            deadline.wait(0.01)
        assert lookup.cache.waiting(url) == callers - 1
        assert server.hits[PATH] == 1
    finally:
        gate.set()
        for thread in threads:
            thread.join()
    assert len(found) == callers and all(c is not None and c.client_id == url for c in found)
    assert server.hits[PATH] == 1


def test_a_deleted_client_comes_back_with_its_document(
    lookup: MetadataDocumentClients, storage: Storage, url: str
) -> None:
    lookup(url)
    with storage.session() as session:
        accounts.delete_client(session, url)
    assert stored(storage, url) is None
    client = lookup(url)
    assert client is not None and stored(storage, url) is not None


def test_a_row_of_another_origin_is_left_alone(
    lookup: MetadataDocumentClients, storage: Storage, url: str
) -> None:
    with storage.session() as session:
        session.add(
            Client(
                client_id=url,
                name="Operator's",
                token_endpoint_auth_method="none",
                redirect_uris=[CALLBACK],
                grant_types=["authorization_code"],
                origin="cli",
            )
        )
    assert lookup(url) is None
    row = stored(storage, url)
    assert row is not None and (row.name, row.origin) == ("Operator's", "cli")


@pytest.mark.parametrize(
    ("client_id", "reason"),
    [
        pytest.param(
            "http://localhost/c.json", "The client_id URL must be an https:// URL.", id="http"
        ),
        pytest.param("https://localhost:1/", "The client_id URL must have a path.", id="no-path"),
        pytest.param(
            "https://localhost:1/c.json?x=1",
            "The client_id URL must not carry a query.",
            id="query",
        ),
    ],
)
def test_bad_urls_are_never_fetched(
    lookup: MetadataDocumentClients, server: DocumentServer, client_id: str, reason: str
) -> None:
    assert refused(lookup, client_id) == reason
    assert sum(server.hits.values()) == 0


def test_hosts_outside_the_globs_are_never_fetched(
    storage: Storage, trusted: str, server: DocumentServer, url: str
) -> None:
    fetcher = SafeFetcher(ca_file=trusted, allow_private=True)
    elsewhere = MetadataDocumentClients(storage, fetcher, SCOPES, ("*.example.com",))
    assert (
        refused(elsewhere, url)
        == "The client_id URL is on a host this server takes no clients from."
    )
    assert server.hits[PATH] == 0
    here = MetadataDocumentClients(storage, fetcher, SCOPES, ("*.example.com", "LOCAL*"))
    assert here(url) is not None


def test_private_addresses_are_refused_unless_allowed(
    storage: Storage, trusted: str, server: DocumentServer, url: str
) -> None:
    strict = MetadataDocumentClients(storage, SafeFetcher(ca_file=trusted), SCOPES)
    assert refused(strict, url) == (
        "The client metadata document could not be fetched: "
        "the host resolves to an address that is not public."
    )
    assert server.hits[PATH] == 0


# --- the whole flow, through the app ----------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def authorize_url(client_id: str, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "state": "s1",
        "scope": "orders:read",
        **params,
    }
    return "/oauth/authorize?" + urlencode(query)


def with_documents(config: Config, trusted: str, **keys: Any) -> Config:
    registration = RegistrationConfig(
        metadata_documents=True,
        allow_private_addresses=True,
        ca_file=trusted,
        allowed_scopes=tuple(sorted(SCOPES)),
        **keys,
    )
    return dataclasses.replace(config, registration=registration)


@pytest.fixture
def person(storage: Storage) -> str:
    with storage.session() as session:
        return accounts.create_user(session, "dana@example.com", PASSWORD).email


@pytest.fixture
def app_client(config: Config, storage: Storage, trusted: str) -> Iterator[TestClient]:
    app = create_app(with_documents(config, trusted))
    with TestClient(app, base_url=config.issuer, follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, url: str, email: str) -> None:
    page = client.get(url)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text
    form = {"action": "login", "email": email, "password": PASSWORD, "csrf_token": csrf(page)}
    assert client.post(url, data=form).status_code == 303


def test_the_code_flow_of_a_metadata_document_client(
    app_client: TestClient, server: DocumentServer, url: str, person: str, config: Config
) -> None:
    verifier, challenge = pkce_pair()
    address = authorize_url(url, code_challenge=challenge, code_challenge_method="S256")
    login_page = app_client.get(address)
    assert login_page.status_code == 200
    host = urlsplit(url).netloc
    assert f"<strong data-client-host>{host}</strong>" in login_page.text
    sign_in(app_client, address, person)
    consent = app_client.get(address)
    assert consent.status_code == 200 and 'value="allow"' in consent.text
    assert "Authorize Research Agent" in consent.text
    assert f"Published at <strong>{host}</strong>" in consent.text
    assert 'data-warning="loopback-only"' in consent.text  # its one redirect URI is loopback
    answer = app_client.post(address, data={"action": "allow", "csrf_token": csrf(consent)})
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["state"] == "s1" and params["iss"] == config.issuer

    token = app_client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": CALLBACK,
            "client_id": url,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    issued = token.json()
    assert issued["scope"] == "orders:read" and issued["refresh_token"]
    refreshed = app_client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": issued["refresh_token"],
            "client_id": url,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    # one fetch served every lookup of the flow
    assert server.hits[PATH] == 1


def test_the_consent_page_of_a_client_with_a_web_redirect(
    app_client: TestClient, server: DocumentServer, url: str, person: str
) -> None:
    web = "https://agent.example/callback"
    server.answers[PATH] = Answer.json(metadata(url, redirect_uris=[web, CALLBACK]))
    _, challenge = pkce_pair()
    address = authorize_url(
        url, redirect_uri=web, code_challenge=challenge, code_challenge_method="S256"
    )
    sign_in(app_client, address, person)
    consent = app_client.get(address)
    assert "Published at" in consent.text
    assert "data-warning" not in consent.text


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param({}, "Public clients must send a PKCE", id="no-pkce"),
        pytest.param(
            {"redirect_uri": "http://127.0.0.1:9999/other"}, "not registered", id="other-path"
        ),
    ],
)
def test_pkce_and_exact_redirect_uris(
    app_client: TestClient, url: str, params: dict[str, str], error: str
) -> None:
    response = app_client.get(authorize_url(url, **params))
    if "redirect_uri" in params:  # not the client's: a page, never a redirect
        assert response.status_code == 400 and "location" not in response.headers
        assert error in response.text
    else:
        assert response.status_code == 302
        assert "error=invalid_request" in response.headers["location"]


def test_a_loopback_redirect_uri_may_use_any_port(app_client: TestClient, url: str) -> None:
    _, challenge = pkce_pair()
    response = app_client.get(
        authorize_url(
            url,
            redirect_uri="http://127.0.0.1:51234/callback",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert response.status_code == 200 and 'name="password"' in response.text


def test_an_unusable_document_is_an_error_page_and_invalid_client(
    app_client: TestClient, server: DocumentServer, url: str
) -> None:
    server.answers[PATH] = Answer.json(
        metadata(url, client_secret=MARKER, client_name=f"Agent {MARKER}")
    )
    page = app_client.get(authorize_url(url))
    assert page.status_code == 400 and "location" not in page.headers
    assert page.headers["content-type"].startswith("text/html")
    assert "invalid_client" in page.text
    assert SECRET in page.text
    assert MARKER not in page.text
    token = app_client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": CALLBACK,
            "client_id": url,
        },
    )
    assert token.status_code == 401
    body = token.json()
    assert body["error"] == "invalid_client"
    assert body["error_description"] == (f"The client metadata document {SECRET}.")
    assert MARKER not in token.text


def test_an_unreachable_document_is_an_error_page(
    app_client: TestClient, server: DocumentServer
) -> None:
    page = app_client.get(authorize_url(server.url("/missing.json")))
    assert page.status_code == 400 and "location" not in page.headers
    assert "the server answered with status 404, not 200" in page.text


def test_discovery_says_metadata_documents_are_supported(
    app_client: TestClient, client: TestClient
) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        assert app_client.get(path).json()["client_id_metadata_document_supported"] is True
        assert "client_id_metadata_document_supported" not in client.get(path).json()


def test_when_off_a_url_is_an_unknown_client_and_nothing_is_fetched(
    client: TestClient, app_client: TestClient, server: DocumentServer, url: str
) -> None:
    """``client`` is the default app (off); ``app_client`` (on) stores the client first: a
    stored row does not make it known while the feature is off."""
    _, challenge = pkce_pair()
    address = authorize_url(url, code_challenge=challenge, code_challenge_method="S256")
    assert app_client.get(address).status_code == 200
    assert server.hits[PATH] == 1
    page = client.get(address)
    assert page.status_code == 400 and "The client does not exist on this server." in page.text
    token = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": CALLBACK,
            "client_id": url,
        },
    )
    assert token.status_code == 401 and token.json()["error"] == "invalid_client"
    assert server.hits[PATH] == 1


def test_logout_fetches_nothing(app_client: TestClient, server: DocumentServer, url: str) -> None:
    query = urlencode({"client_id": url, "post_logout_redirect_uri": "https://agent.example/bye"})
    page = app_client.get(f"/oauth/logout?{query}")
    assert page.status_code == 400 and "location" not in page.headers
    assert server.hits[PATH] == 0
