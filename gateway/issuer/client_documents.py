"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a client whose
``client_id`` is the ``https://`` URL of a JSON document describing it, fetched when needed.

With ``[registration] metadata_documents = true``, ``MetadataDocumentClients`` is Authlib's
``query_client``: a ``client_id`` that is an http(s) URL names such a client, any other is
looked up as before. The URL must be ``https://`` with a path other than ``/``, and carry no
query, fragment, credentials, nor ``.`` / ``..`` segments (draft §3); its host must match
``[registration] metadata_document_hosts`` when that is set. The document is fetched by the
SSRF-safe ``SafeFetcher`` and must be a JSON object with (draft §4.1, RFC 7591 §2):

- ``client_id`` exactly the URL it was fetched from (compared as strings);
- ``client_name``, shown to people (with the URL's host beside it on the consent page);
- ``redirect_uris``, by the rules of ``gateway client create``, matched exactly at the
  authorization endpoint (RFC 8252 loopback ports aside, as for every client);
- ``token_endpoint_auth_method`` ``none``: a public client, held to PKCE as every public
  client is; or ``private_key_jwt`` (RFC 7523) with exactly one of ``jwks`` (its public
  signing keys, held as ``gateway client create --jwks`` holds them) and ``jwks_uri`` (an
  https URL on the document's own host, so the keys are vouched for by whoever serves the
  document; fetched by the same SSRF-safe rules, ``gateway.issuer.client_keys``). A shared
  secret cannot be published, so any ``client_secret*`` field is refused.

``grant_types`` (default ``authorization_code``, RFC 7591 §2) may add ``refresh_token`` and
nothing else; ``response_types`` may only say ``code``. ``scope``, when given, is what the
client may ask for within ``[registration] allowed_scopes`` (default: every scope the routes
name); without it, all of those. ``dpop_bound_access_tokens`` (RFC 9449 §5.2), a boolean: true,
and the client's token requests must carry a DPoP proof.

Any failure is ``invalid_client`` with a description naming what was wrong and never quoting
the document: 401 at the token endpoint, an error page (never a redirect: nothing about the
client can be trusted) at the authorization endpoint.

What a document said is kept per ``Cache-Control: max-age``, between a minute and a day (an
hour when unsaid); a failure for a minute (``FetchCache``: one fetch at a time per URL). Each
fetch stores the client in the clients table (``origin`` ``metadata-document``, never
first-party), so grants, consents, tokens and ``gateway client list`` treat it as any other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidClientError

from gateway import strict_json
from gateway.accounts import redirect_uri_problem
from gateway.config import Config
from gateway.hosts import is_loopback_host
from gateway.issuer.client_keys import (
    JwksRefused,
    jwks_uri_problem,
    read_jwks,
    registration_fetcher,
)
from gateway.issuer.fetch_cache import FAILURE_KEEP, FetchCache, keep_for
from gateway.issuer.fetcher import FetchRefused, SafeFetcher
from gateway.issuer.records import ClientLookup, load_client
from gateway.models import CLIENT_ID_LENGTH, METADATA_DOCUMENT, Client
from gateway.resources import registrable_scopes
from gateway.storage import Storage

#: the largest metadata document fetched (the fetcher's default)
MAX_DOCUMENT_BYTES = 5 * 1024

#: what a public client of this kind may use (RFC 7591 §2's default is the first alone)
GRANT_TYPES = ("authorization_code", "refresh_token")
#: the ``clients.name`` column's size
MAX_NAME_LENGTH = 200
#: RFC 3986 §2: the characters a URI may hold (a ``%`` starts an escape)
URI_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)

clients = cast(sa.Table, Client.__table__)


class DocumentRefused(Exception):
    """The document is not usable; ``str()`` is a clause saying why, quoting none of it."""


def is_document_url(client_id: str) -> bool:
    """Whether ``client_id`` is meant as a metadata document's URL (http too: it is then
    refused as one, with a reason, rather than looked up as an unknown id)."""
    head = client_id[:8].lower()
    return head.startswith(("https://", "http://"))


def url_problem(url: str, hosts: Iterable[str] = ()) -> str | None:
    """Why ``url`` cannot name a client's metadata document (draft §3), or None. ``hosts``:
    glob patterns its host must match one of (none: any host)."""
    if len(url) > CLIENT_ID_LENGTH:
        return f"is longer than {CLIENT_ID_LENGTH} characters"
    if not url.startswith("https://"):
        return "must be an https:// URL"
    if not URI_CHARACTERS.issuperset(url):
        return "holds characters a URL may not"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return "is not a valid URL"
    if "@" in parts.netloc:
        return "must not carry credentials"
    if not parts.hostname:
        return "has no host"
    if "#" in url:
        return "must not carry a fragment"
    if "?" in url:
        return "must not carry a query"
    if parts.path in ("", "/"):
        return "must have a path"
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return "must not hold . or .. path segments"
    patterns = [pattern.lower() for pattern in hosts]
    if patterns and not any(fnmatchcase(parts.hostname, p) for p in patterns):
        return "is on a host this server takes no clients from"
    return None


@dataclass(frozen=True)
class ClientDocument:
    """What a valid document says, as the clients table keeps it."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scope: str
    #: ``dpop_bound_access_tokens``
    require_dpop: bool = False
    #: ``none``, or ``private_key_jwt`` with one of ``jwks`` and ``jwks_uri``
    auth_method: str = "none"
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None

    def columns(self) -> dict[str, Any]:
        """The clients table's columns for it: no secret, never first-party."""
        return {
            "name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "grant_types": list(self.grant_types),
            "scope": self.scope,
            "token_endpoint_auth_method": self.auth_method,
            "jwks": self.jwks,
            "jwks_uri": self.jwks_uri,
            "client_secret_hash": None,
            "can_introspect": False,
            "post_logout_redirect_uris": [],
            "first_party": False,
            "require_dpop": self.require_dpop,
        }


def _string_list(document: dict[str, Any], name: str) -> list[str] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DocumentRefused(f"has {name} that is not a list of strings")
    return value


def read_document(url: str, body: bytes, allowed_scopes: frozenset[str]) -> ClientDocument:
    """The client the document fetched from ``url`` describes, or ``DocumentRefused``."""
    try:
        document = strict_json.loads(body)
    except strict_json.RepeatedMember:
        raise DocumentRefused("names a member twice") from None
    except ValueError:
        raise DocumentRefused("is not valid JSON") from None
    if not isinstance(document, dict):
        raise DocumentRefused("is not a JSON object")
    if document.get("client_id") != url:
        raise DocumentRefused("has a client_id other than the URL it was fetched from")
    if any(name.startswith("client_secret") for name in document):
        raise DocumentRefused("holds a client_secret member: such a client has no secret")
    method = document.get("token_endpoint_auth_method")
    if method not in ("none", "private_key_jwt"):
        raise DocumentRefused("must have token_endpoint_auth_method none or private_key_jwt")
    jwks, jwks_uri = _keys(url, document) if method == "private_key_jwt" else (None, None)
    name = document.get("client_name")
    if not isinstance(name, str) or not name.strip():
        raise DocumentRefused("has no client_name")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise DocumentRefused(f"has a client_name longer than {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise DocumentRefused("has a client_name with characters that cannot be shown")
    redirect_uris = _string_list(document, "redirect_uris")
    if not redirect_uris:
        raise DocumentRefused("has no redirect_uris")
    for i, uri in enumerate(redirect_uris):
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise DocumentRefused(f"has redirect_uris[{i}] that {problem}")
    grant_types = _string_list(document, "grant_types") or ["authorization_code"]
    if not set(grant_types) <= set(GRANT_TYPES) or "authorization_code" not in grant_types:
        raise DocumentRefused(
            "has grant_types other than authorization_code, and refresh_token with it"
        )
    response_types = _string_list(document, "response_types")
    if response_types is not None and set(response_types) != {"code"}:
        raise DocumentRefused("has response_types other than code")
    scope = document.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise DocumentRefused("has a scope that is not a string")
    wanted = sorted(allowed_scopes) if scope is None else scope.split()
    dpop = document.get("dpop_bound_access_tokens", False)
    if not isinstance(dpop, bool):
        raise DocumentRefused("has a dpop_bound_access_tokens that is not a boolean")
    return ClientDocument(
        client_id=url,
        name=name,
        redirect_uris=tuple(dict.fromkeys(redirect_uris)),
        grant_types=tuple(dict.fromkeys(grant_types)),
        scope=" ".join(s for s in dict.fromkeys(wanted) if s in allowed_scopes),
        require_dpop=dpop,
        auth_method=method,
        jwks=jwks,
        jwks_uri=jwks_uri,
    )


def _keys(url: str, document: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A private_key_jwt client's ``jwks`` or ``jwks_uri`` (exactly one)."""
    jwks, jwks_uri = document.get("jwks"), document.get("jwks_uri")
    if (jwks is None) == (jwks_uri is None):
        raise DocumentRefused("asks for private_key_jwt without exactly one of jwks and jwks_uri")
    if jwks is not None:
        try:
            read_jwks(jwks, strict=True)
        except JwksRefused as refused:
            raise DocumentRefused(f"has jwks that {refused}") from None
        return jwks, None
    if not isinstance(jwks_uri, str) or jwks_uri_problem(jwks_uri) is not None:
        raise DocumentRefused("has a jwks_uri that is not a usable https URL")
    if urlsplit(jwks_uri).hostname != urlsplit(url).hostname:
        raise DocumentRefused("has a jwks_uri on another host than the document's")
    return None, jwks_uri


class MetadataDocumentClients(ClientLookup):
    """Authlib's ``query_client`` with metadata documents on: a URL ``client_id`` by its
    document (``InvalidClientError`` naming why it is not usable), any other as before."""

    def __init__(
        self,
        storage: Storage,
        fetcher: SafeFetcher,
        allowed_scopes: frozenset[str],
        hosts: tuple[str, ...] = (),
        cache: FetchCache[ClientDocument | str] | None = None,
    ) -> None:
        super().__init__(storage, allowed_scopes)
        self.fetcher = fetcher
        self.hosts = hosts
        #: per URL: the document, or why it is not usable
        self.cache: FetchCache[ClientDocument | str] = cache or FetchCache()

    @classmethod
    def from_config(cls, config: Config, storage: Storage) -> MetadataDocumentClients:
        """From ``[registration]``; a ``ca_file`` that cannot be loaded is a ``ConfigError``."""
        fetcher = registration_fetcher(config, MAX_DOCUMENT_BYTES)
        return cls(
            storage,
            fetcher,
            registrable_scopes(config),
            config.registration.metadata_document_hosts,
        )

    def __call__(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or not is_document_url(client_id):
            return super().__call__(client_id)
        document = self.document(client_id)
        client = self.storage.read(lambda conn: load_client(conn, client_id))
        if client is None:  # deleted since (``gateway client delete``): it comes back
            self._store(document)
            client = self.storage.read(lambda conn: load_client(conn, client_id))
        if client is None or client.origin != METADATA_DOCUMENT:
            return None
        return client

    def document(self, url: str) -> ClientDocument:
        """The valid document at ``url``, fetched or kept; else ``InvalidClientError``."""
        problem = url_problem(url, self.hosts)
        if problem is not None:
            raise InvalidClientError(description=f"The client_id URL {problem}.")
        kept = self.cache.get(url, lambda: self._load(url))
        if isinstance(kept, str):
            raise InvalidClientError(description=kept)
        return kept

    def _load(self, url: str) -> tuple[ClientDocument | str, float]:
        try:
            fetched = self.fetcher.fetch(url)
        except FetchRefused as refused:
            return f"The client metadata document could not be fetched: {refused}.", FAILURE_KEEP
        try:
            document = read_document(url, fetched.body, self.registered_scopes)
        except DocumentRefused as refused:
            return f"The client metadata document {refused}.", FAILURE_KEEP
        self._store(document)
        return document, keep_for(fetched.max_age)

    def _store(self, document: ClientDocument) -> None:
        """Insert or refresh the client's row. A row of another origin with this id is left
        alone (``__call__`` then answers no client); of two replicas inserting at once, the
        loser updates the winner's row."""
        values = document.columns()
        for attempt in (1, 2):
            try:
                with self.storage.writing() as conn:
                    updated = conn.execute(
                        sa.update(clients)
                        .where(
                            clients.c.client_id == document.client_id,
                            clients.c.origin == METADATA_DOCUMENT,
                        )
                        .values(**values)
                    ).rowcount
                    exists = (
                        updated
                        or conn.execute(
                            sa.select(clients.c.id).where(clients.c.client_id == document.client_id)
                        ).first()
                    )
                    if not exists:
                        conn.execute(
                            sa.insert(clients).values(
                                client_id=document.client_id,
                                origin=METADATA_DOCUMENT,
                                created_at=time.time(),
                                **values,
                            )
                        )
                return
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise


def client_host(client: Client) -> str | None:
    """Where a metadata-document client lives (its URL's host, and port when it has one):
    what a person can check, where its name is only what it says of itself."""
    if client.origin != METADATA_DOCUMENT:
        return None
    return urlsplit(client.client_id).netloc


def _is_loopback(uri: str) -> bool:
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        return False
    return host is not None and is_loopback_host(host)


def loopback_only(client: Client) -> bool:
    """A client that did not come from the operator whose every redirect URI is on loopback:
    any program on the user's device can receive its codes, so its name proves nothing."""
    return (
        client.origin != "cli"
        and bool(client.redirect_uris)
        and all(_is_loopback(uri) for uri in client.redirect_uris)
    )
