"""Pushed authorization requests (RFC 9126): ``POST /oauth/par``, and the authorization
endpoint's side of them.

The push (§2): the client authenticates as at the token endpoint (``Server.authenticate_client``,
every method it takes; a public client by its ``client_id``, §2), and its form is the
authorization request, validated by the very code that validates one at ``/oauth/authorize``
(``AuthorizationRequestCheck``). Any error is a JSON RFC 6749 error, 400 (401
``invalid_client``), never a redirect (§2.3). A ``request_uri`` inside a push is
``invalid_request`` (§2.1: "The request_uri authorization request parameter is one exception,
and it MUST NOT be provided"); a ``request`` object is ``request_not_supported`` (no JAR here).
The answer is 201 ``{"request_uri": "urn:ietf:params:oauth:request_uri:<256 random bits>",
"expires_in": [par] request_lifetime}``; only the hash of the random part is stored, with the
client and the parameters (the client's credentials are not parameters, and are not kept).

The redemption (§4): ``/oauth/authorize?client_id=...&request_uri=...`` reads the stored request,
and nothing else of the query. "The authorization server MUST consider the request_uri value as
one-time use": the first request that names it redeems it, by one conditional UPDATE (``WHERE
used_at IS NULL``: of two replicas, or two tabs, exactly one wins). The pages that follow (the
login form, its post/redirect/get, the consent page) need the request again, and §4 lets the
server allow reloads; here they get no second use of the pushed ``request_uri``: the same
UPDATE replaces its hash with the hash of a new random value (the continuation), and the
browser is sent on (303) to ``/oauth/authorize?client_id=...&request_uri=<continuation>``. The
continuation names the redeemed request, on the server: the browser can neither change the
parameters nor reach them by the old ``request_uri``. It lasts ``INTERACTION_LIFETIME`` and ends
with the authorization response: the row is deleted, by one conditional DELETE, before the code
(or the denial) is sent, so one push gives at most one answer.

A ``request_uri`` that is malformed, unknown, used, expired or another client's is
``invalid_request`` on the error page, never a redirect: the redirect URI is not trusted until
the request is found. With ``[par] required``, or for a client registered with
``require_par``, an authorization request that was not pushed is refused the same way.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.issuer.authorization_request import AuthorizationRequestCheck
from gateway.issuer.client_assertions import PAR_ENDPOINT
from gateway.issuer.clientauth import CLIENT_AUTH_METHODS
from gateway.issuer.dpop_tokens import TokenRequestProof
from gateway.issuer.oauth_request import OAuthRequest, RequestReader
from gateway.issuer.server import NO_STORE, Server
from gateway.models import PushedRequest, sha256
from gateway.storage import Storage

#: RFC 9126 §2.2: "urn:ietf:params:oauth:request_uri:<reference-value>"
PREFIX = "urn:ietf:params:oauth:request_uri:"
#: ``models.random_token``'s 256 bits are 43 characters; anything much longer is not ours
MAX_REFERENCE_LENGTH = 64
_REFERENCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
#: seconds a redeemed request stays open for its login and consent pages
INTERACTION_LIFETIME = 600
#: how a client authenticates, not what it asks for: never stored with the request
CREDENTIALS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})
REQUIRED = "A pushed authorization request is required."
_TABLE = cast(sa.Table, PushedRequest.__table__)
NOT_REDEEMABLE = "The request_uri is not valid: unknown, used, expired or another client's."


@dataclass(frozen=True)
class Redeemed:
    """A pushed request opened at the authorization endpoint: ``row`` (what ``finish``
    ends) and its parameters as an ``OAuthRequest``."""

    row: int
    request: OAuthRequest


def reference_of(request_uri: str) -> str | None:
    """The random part of one of our ``request_uri`` values, else None."""
    if not request_uri.startswith(PREFIX):
        return None
    reference = request_uri[len(PREFIX) :]
    if not 0 < len(reference) <= MAX_REFERENCE_LENGTH or not _REFERENCE_CHARS.issuperset(reference):
        return None
    return reference


def _pairs(parameters: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(name, value) for name, values in parameters.items() for value in values]


class PushedRequests:
    """The ``pushed_requests`` rows: pushed, redeemed once, finished once. ``lifetime``:
    ``[par] request_lifetime``; ``clock``: seconds since the epoch (tests move it)."""

    def __init__(
        self, storage: Storage, lifetime: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.storage = storage
        self.lifetime = lifetime
        self.clock = clock

    def push(self, client_id: str, parameters: Mapping[str, list[str]]) -> str:
        """Store ``parameters`` (each name's values, in order) for ``client_id``; the
        request_uri that redeems them."""
        reference = secrets.token_urlsafe(32)
        with self.storage.session(write=True) as session:
            session.add(
                PushedRequest(
                    request_uri_hash=sha256(reference),
                    client_id=client_id,
                    parameters=dict(parameters),
                    created_at=self.clock(),
                    expires_at=self.clock() + self.lifetime,
                )
            )
        return PREFIX + reference

    def redeem(self, client_id: str, reference: str) -> str | None:
        """The one use of a pushed request: its continuation's request_uri, or None (unknown,
        used, expired, or another client's: a wrong client does not use it up)."""
        continuation = secrets.token_urlsafe(32)
        now = self.clock()
        table = _TABLE
        with self.storage.session(write=True) as session:
            result = session.connection().execute(
                sa.update(table)
                .where(
                    table.c.request_uri_hash == sha256(reference),
                    table.c.client_id == client_id,
                    table.c.used_at.is_(None),
                    table.c.expires_at > now,
                )
                .values(
                    used_at=now,
                    request_uri_hash=sha256(continuation),
                    expires_at=now + INTERACTION_LIFETIME,
                )
            )
            won = result.rowcount == 1
        return PREFIX + continuation if won else None

    def resume(self, client_id: str, reference: str) -> tuple[int, list[tuple[str, str]]] | None:
        """A redeemed request by its continuation: its row and parameters, else None."""
        table = _TABLE
        with self.storage.session() as session:
            row = session.execute(
                sa.select(table.c.id, table.c.parameters).where(
                    table.c.request_uri_hash == sha256(reference),
                    table.c.client_id == client_id,
                    table.c.used_at.is_not(None),
                    table.c.expires_at > self.clock(),
                )
            ).first()
        return None if row is None else (row.id, _pairs(row.parameters))

    def finish(self, row: int) -> bool:
        """The authorization response of a redeemed request: True for the one that may send it."""
        table = _TABLE
        with self.storage.session(write=True) as session:
            result = session.connection().execute(sa.delete(table).where(table.c.id == row))
            return bool(result.rowcount == 1)


class PushedAuthorization:
    """Both ends of RFC 9126: ``push`` (the endpoint) and ``open`` (for ``/oauth/authorize``).
    ``required``: ``[par] required``."""

    def __init__(
        self,
        server: Server,
        reader: RequestReader,
        requests: PushedRequests,
        check: AuthorizationRequestCheck,
        required: bool,
        proof: TokenRequestProof,
    ) -> None:
        #: a DPoP proof sent with the push (RFC 9449 §10.1), checked for the PAR endpoint's URL
        self.proof = proof
        self.server = server
        self.reader = reader
        self.requests = requests
        self.check = check
        self.required = required

    # --- POST /oauth/par (§2) -------------------------------------------------------------------

    async def push(self, http: HTTPRequest) -> Response:
        try:
            request = await self.reader.read(http, query=False)
            return await run_in_threadpool(self._push, request)
        except OAuth2Error as error:
            # §2.3: the errors of the token endpoint's shape, never a redirect to the client
            error.redirect_uri = None
            error.state = None
            return self.server.handle_error_response(None, error)

    def _push(self, request: OAuthRequest) -> Response:
        jkt = self.proof.thumbprint(request)
        client = self.server.authenticate_client(request, CLIENT_AUTH_METHODS, PAR_ENDPOINT)
        data = request.payload.data
        if "request_uri" in data:
            raise InvalidRequestError("A pushed request must not hold a 'request_uri'.")
        if data.get("client_id") != client.client_id:
            # §2.1: client_id is as required as in any authorization request
            raise InvalidRequestError("The pushed request must name its client in 'client_id'.")
        self.check.check(request)
        parameters = {
            name: list(values)
            for name, values in request.payload.datalist.items()
            if name not in CREDENTIALS
        }
        if jkt is not None:
            # RFC 9449 §10.1: a proof with the push binds the code as dpop_jkt would, and
            # "MUST reject the request if the JWK Thumbprint in dpop_jkt does not match"
            if parameters.setdefault("dpop_jkt", [jkt]) != [jkt]:
                raise InvalidRequestError("'dpop_jkt' names another key than the DPoP proof.")
        request_uri = self.requests.push(client.client_id, parameters)
        body = {"request_uri": request_uri, "expires_in": self.requests.lifetime}
        return JSONResponse(body, 201, dict(NO_STORE) | self.proof.nonce_headers())

    # --- GET/POST /oauth/authorize (§4) ----------------------------------------------------------

    async def open(self, http: HTTPRequest, request: OAuthRequest) -> Redeemed | Response | None:
        """The authorization request ``request`` stands for: None for a request that was not
        pushed (and need not be), the redeemed one, or the redirect to its continuation.
        Raises ``InvalidRequestError`` (for the error page, no redirect) for the rest."""
        data = request.payload.data
        client_id = data.get("client_id") or ""
        if "request_uri" not in data:
            if self.required or await run_in_threadpool(self._client_requires, client_id):
                raise InvalidRequestError(REQUIRED)
            return None
        reference = reference_of(data["request_uri"])
        if reference is None:
            raise InvalidRequestError(NOT_REDEEMABLE)
        found = await run_in_threadpool(self.requests.resume, client_id, reference)
        if found is None:
            continuation = await run_in_threadpool(self.requests.redeem, client_id, reference)
            if continuation is None:
                raise InvalidRequestError(NOT_REDEEMABLE)
            query = urlencode({"client_id": client_id, "request_uri": continuation})
            response = RedirectResponse(f"{http.url.path}?{query}", 303)
            response.headers.update(dict(NO_STORE))
            return response
        row, pairs = found
        pushed = OAuthRequest(
            request.method, request.uri, request.headers, pairs, [], request.client_addr
        )
        return Redeemed(row, pushed)

    def _client_requires(self, client_id: str) -> bool:
        client = self.server.query_client(client_id) if client_id else None
        return bool(client is not None and getattr(client, "require_par", False))

    async def finish(self, redeemed: Redeemed | None) -> None:
        """Before the authorization response of ``redeemed``: raise ``InvalidRequestError``
        unless this is its only one."""
        if redeemed is not None and not await run_in_threadpool(self.requests.finish, redeemed.row):
            raise InvalidRequestError("The pushed authorization request was already answered.")
