"""Dynamic client registration (RFC 7591) at ``POST /oauth/register``, and each registered
client's configuration endpoint (RFC 7592) at ``/oauth/register/{client_id}``.

Served when ``[registration] dynamic`` is ``"open"`` (anyone may register) or ``"token"`` (a
registration carries an initial access token, ``Authorization: Bearer``, from ``gateway
registration token create``: ``gateway.registration_tokens``). A registration is checked in
this order: the initial access token (401 ``invalid_token``, RFC 6750 §3.1; two
``Authorization`` headers are 400 ``invalid_request``, as at every protected resource), the
body (a JSON object of at most ``MAX_BODY`` bytes: 400 ``invalid_request``, 413), the metadata
(``client_metadata``: 400 ``invalid_redirect_uri`` / ``invalid_client_metadata``), then, in one
transaction, the address's hourly count (429 with ``Retry-After``: ``registration_rate``), a use
of the initial access token, and the client. A failed registration spends and counts nothing.

The answer (201) is the client information (RFC 7591 §3.2.1) with its ``client_secret`` (for
a confidential client) and a registration access token, each shown this once and kept as a
SHA-256 hash. That token is the only key to the configuration endpoint (RFC 7592 §2): ``GET``
reads the registration, ``PUT`` replaces it (§2.2), ``DELETE`` deletes the client and revokes
every grant it has (§2.3: durable before the 204, as every revocation). RFC 7592 §3 has every
answer carry a registration access token; only its hash is kept, so each ``GET`` and ``PUT``
answers with a new one, and the one presented stops working (§2.1 allows this rotation). A
wrong or absent token, or a client that is gone, is 401 ``invalid_token`` (§2.1). Registered
clients are never first-party: a person always sees their consent page.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any, NoReturn, cast

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import accounts, strict_json
from gateway.bearer import credentials
from gateway.config import Config
from gateway.errors import InvalidToken
from gateway.forwarded import ForwardedPolicy
from gateway.introspect.revoker import Revoker
from gateway.issuer.client_metadata import (
    ClientMetadata,
    client_information,
    method_kind,
    parse_metadata,
)
from gateway.issuer.registration_rate import RegistrationRate, TooManyRegistrations
from gateway.issuer.server import NO_STORE
from gateway.models import Client, Consent, random_token, sha256
from gateway.registration_tokens import is_usable, spend
from gateway.storage import Storage
from gateway.throttle import address_key

clients = cast(sa.Table, Client.__table__)

#: RFC 7591 §3: the client registration endpoint
REGISTER = "/oauth/register"
#: RFC 7592 §2: what a client configuration endpoint (``REGISTER/{client_id}``) answers
CONFIGURATION = ["GET", "PUT", "DELETE"]
#: a registration is a few hundred bytes; twenty long redirect URIs fit many times over
MAX_BODY = 65536
ORIGIN = "registration"
#: RFC 7592 §2.2: "MUST NOT include" these in an update
SERVER_FIELDS = (
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
)


class RegistrationEndpoint:
    """``POST /oauth/register`` and ``GET``/``PUT``/``DELETE /oauth/register/{client_id}``."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        revoker: Revoker,
        forwarded: ForwardedPolicy,
        allowed_scopes: frozenset[str],
    ) -> None:
        self.issuer = config.issuer
        self.mode = config.registration.dynamic
        self.needs_token = self.mode == "token"
        self.storage = storage
        self.revoker = revoker
        self.forwarded = forwarded
        self.allowed_scopes = allowed_scopes
        self.rate = RegistrationRate(
            config.registration.max_per_address_per_hour, storage.is_postgres
        )

    def routes(self) -> list[Route]:
        """Its two paths, unless ``[registration] dynamic`` is off (then they are unknown)."""
        if self.mode == "off":
            return []
        return [
            Route(REGISTER, self.register, methods=["POST"]),
            Route(REGISTER + "/{client_id}", self.configuration, methods=CONFIGURATION),
        ]

    # --- RFC 7591 -----------------------------------------------------------------------------

    async def register(self, http: HTTPRequest) -> Response:
        initial = None
        if self.needs_token:
            initial = _bearer(http)
            token = initial
            if not await run_in_threadpool(self.storage.read, lambda c: is_usable(c, token)):
                raise InvalidToken("invalid initial access token")
        try:
            metadata = parse_metadata(await read_object(http), self.allowed_scopes)
            address = address_key(
                self.forwarded.client_address(
                    http.client.host if http.client else None,
                    http.headers.getlist("x-forwarded-for"),
                )
            )
            body = await run_in_threadpool(self._register, metadata, address, initial)
        except OAuth2Error as error:
            return refusal(error)
        return JSONResponse(body, 201, dict(NO_STORE))

    def _register(
        self, metadata: ClientMetadata, address: str, initial: str | None
    ) -> dict[str, Any]:
        access_token = random_token()
        with self.storage.session(write=True) as session:
            conn = session.connection()
            self.rate.count(conn, address)
            if initial is not None and not spend(conn, initial):
                raise InvalidToken("invalid initial access token")  # its last use went meanwhile
            new = accounts.create_client(
                session,
                metadata.client_name,
                list(metadata.redirect_uris),
                list(metadata.grant_types),
                metadata.scope,
                metadata.token_endpoint_auth_method,
                origin=ORIGIN,
                jwks=metadata.jwks,
                jwks_uri=metadata.jwks_uri,
            )
            client = new.client
            client.client_uri = metadata.client_uri
            client.application_type = metadata.application_type
            client.require_par = metadata.require_par
            client.require_dpop = metadata.dpop_bound_access_tokens
            client.registration_token_hash = sha256(access_token)
        body = client_information(client, self.issuer)
        if new.client_secret is not None:
            body["client_secret"] = new.client_secret
        body["registration_access_token"] = access_token
        return body

    # --- RFC 7592 -----------------------------------------------------------------------------

    async def configuration(self, http: HTTPRequest) -> Response:
        if http.method == "HEAD":  # Starlette's with GET: it would rotate the token unseen
            headers = {**dict(NO_STORE), "Allow": ", ".join(CONFIGURATION)}
            return Response(status_code=405, headers=headers)
        client_id = http.path_params["client_id"]
        token = _bearer(http)
        await run_in_threadpool(self._check, client_id, token)
        try:
            if http.method == "DELETE":
                await run_in_threadpool(self._delete, client_id, token)
                return Response(status_code=204, headers=dict(NO_STORE))
            change: Callable[[Client], None] | None = None
            if http.method == "PUT":
                document = await read_object(http)
                metadata = parse_metadata(document, self.allowed_scopes)
                change = functools.partial(replace, document=document, metadata=metadata)
            body = await run_in_threadpool(self._answer, client_id, token, change)
        except OAuth2Error as error:
            return refusal(error)
        return JSONResponse(body, 200, dict(NO_STORE))

    def _check(self, client_id: str, token: str) -> None:
        """401 unless ``token`` is the registration access token of ``client_id`` (a first
        look, before the body is read; the writes check again)."""
        with self.storage.session() as session:
            _registered(session, client_id, token)

    def _answer(
        self,
        client_id: str,
        token: str,
        change: Callable[[Client], None] | None,
    ) -> dict[str, Any]:
        """The client information with a new registration access token, after ``change``."""
        new_token = random_token()
        with self.storage.session(write=True) as session:
            client = _registered(session, client_id, token)
            rotated = session.execute(
                sa.update(Client)
                .where(Client.id == client.id, Client.registration_token_hash == sha256(token))
                .values(registration_token_hash=sha256(new_token))
            )
            if cast(sa.CursorResult[Any], rotated).rowcount != 1:
                _refuse()  # another request rotated it first
            if change is not None:
                change(client)
        body = client_information(client, self.issuer)
        body["registration_access_token"] = new_token
        return body

    def _delete(self, client_id: str, token: str) -> None:
        """The client, its users' consents and (in the same transaction) every grant of it."""

        def delete(session: Session) -> list[Any]:
            deleted = session.connection().execute(
                sa.delete(clients).where(
                    clients.c.client_id == client_id,
                    clients.c.origin == ORIGIN,
                    clients.c.registration_token_hash == sha256(token),
                )
            )
            if deleted.rowcount != 1:
                _refuse()  # deleted meanwhile, or its token rotated
            session.execute(sa.delete(Consent).where(Consent.client_id == client_id))
            return self.revoker.client(session, client_id)

        self.revoker.revoke(delete)


def _refuse() -> NoReturn:
    raise InvalidToken("invalid registration access token")


def _registered(session: Session, client_id: str, token: str) -> Client:
    """The client ``token`` is the registration access token of (RFC 7592 §2.1: else 401,
    an unknown client included)."""
    client = accounts.find_client(session, client_id)
    if client is None or client.origin != ORIGIN or client.registration_token_hash is None:
        _refuse()
    if not secrets.compare_digest(client.registration_token_hash, sha256(token)):
        _refuse()
    return client


def replace(client: Client, document: dict[str, Any], metadata: ClientMetadata) -> None:
    """RFC 7592 §2.2: the update's metadata replaces the client's, omitted fields taking their
    defaults. The request names the client (``client_id``, which must be its own), may prove
    its ``client_secret`` (which must then match), and never sends the fields only the server
    sets; a client keeps its kind: public stays public, a client with a secret keeps using a
    secret, one with keys (``private_key_jwt``) keeps using keys, which it may replace."""
    if document.get("client_id") != client.client_id:
        raise InvalidClientMetadataError("client_id must be the client's own.")
    for field in SERVER_FIELDS:
        if field in document:
            raise InvalidClientMetadataError(f"{field} must not be sent in an update.")
    secret = document.get("client_secret")
    if secret is not None and not (
        isinstance(secret, str) and secret.isascii() and client.check_client_secret(secret)
    ):
        raise InvalidClientMetadataError("client_secret is not the client's secret.")
    if metadata.kind != method_kind(client.token_endpoint_auth_method):
        raise InvalidClientMetadataError(
            "token_endpoint_auth_method cannot change between none, a client secret and "
            "private_key_jwt; register a new client instead."
        )
    client.name = metadata.client_name
    client.client_uri = metadata.client_uri
    client.redirect_uris = list(metadata.redirect_uris)
    client.grant_types = list(metadata.grant_types)
    client.scope = metadata.scope
    client.token_endpoint_auth_method = metadata.token_endpoint_auth_method
    client.application_type = metadata.application_type
    client.require_par = metadata.require_par
    client.require_dpop = metadata.dpop_bound_access_tokens
    client.jwks = metadata.jwks
    client.jwks_uri = metadata.jwks_uri


async def read_object(http: HTTPRequest) -> dict[str, Any]:
    """The request's JSON object (RFC 7591 §3.1: ``application/json``, RFC 8259's UTF-8), of
    at most ``MAX_BODY`` bytes (else 413); a member named twice is refused, not guessed at."""
    ctype = http.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise InvalidRequestError("The request body must be application/json.")
    too_large = InvalidRequestError(f"The request body is over {MAX_BODY} bytes.", status_code=413)
    declared = http.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    chunks, size = [], 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    try:
        document = strict_json.loads(b"".join(chunks))
    except ValueError:
        raise InvalidRequestError("The request body must be one JSON object.") from None
    if not isinstance(document, dict):
        raise InvalidRequestError("The request body must be one JSON object.")
    return document


def refusal(error: OAuth2Error) -> Response:
    """RFC 7591 §3.2.2: ``error`` and ``error_description`` as JSON."""
    body = {"error": error.error}
    if error.description:
        body["error_description"] = error.description
    headers = dict(NO_STORE)
    if isinstance(error, TooManyRegistrations):
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(body, error.status_code or 400, headers)


def _bearer(http: HTTPRequest) -> str:
    """The request's ``Bearer`` token: these tokens are opaque, never DPoP-bound."""
    return credentials(http.headers.getlist("authorization"), dpop=False)[1]
