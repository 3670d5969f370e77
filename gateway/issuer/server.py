"""Authlib's authorization server, adapted to Starlette.

Authlib has no Starlette server integration; this is the thin adapter its Flask one models:
a request wrapper whose payload keeps repeated parameters (PKCE and the duplicate-parameter
checks read ``datalist``), and an ``AuthorizationServer`` subclass. Authlib's core is sync:
endpoints read the body first (``await request.form()``), then call into it from a threadpool.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError, UnsupportedResponseTypeError
from starlette.datastructures import Headers
from starlette.responses import Response

from gateway.accounts import find_user, normalize_email, storable
from gateway.config import Config
from gateway.forwarded import ForwardedPolicy
from gateway.introspect.revoker import Revoker
from gateway.introspect.validator import BearerValidator
from gateway.issuer import clientauth
from gateway.issuer.devices import DeviceCodec
from gateway.issuer.records import load_client
from gateway.issuer.tokens import persist_token
from gateway.keys import KeyRing, session_secret
from gateway.models import Client, User
from gateway.passwords import PasswordPool
from gateway.storage import Storage
from gateway.throttle import KnownDevice, LoginThrottle

#: RFC 6749 §5.1 and RFC 7009/7662 responses carry credentials: never cache them
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


MAX_CREDENTIAL_LENGTH = 512
#: RFC 6749 Appendix A: VSCHAR, %x20-7E
VSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F))
#: NQSCHAR, %x20-21 / %x23-5B / %x5D-7E: also all that an error description may hold (§5.2)
NQSCHAR = VSCHAR - {'"', "\\"}


class Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist

    def has_repeats(self) -> bool:
        """A name given more than once (RFC 6749 §3.1, §3.2: not allowed)."""
        return any(len(values) > 1 for values in self._datalist.values())


class Request(OAuth2Request):
    """What Authlib's grants read: ``payload``, ``args``, ``form``, ``headers``."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        client_addr: str,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = Payload(query + form)
        self._args = dict(query)
        self._form = dict(form)
        self.client_addr = client_addr

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class ResponseTypeNotSupported(UnsupportedResponseTypeError):
    """Authlib's, whose description quotes the request's ``response_type`` (into the error
    page and the redirect back): a fixed one instead."""

    def __init__(self, redirect_uri: str | None) -> None:
        super().__init__(None, "The response type is not supported.", redirect_uri=redirect_uri)

    def get_error_description(self) -> str:
        return str(self.description)


class Server(AuthorizationServer):
    """Holds what the grants and endpoints need; requests are always built by the caller."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        keyring: KeyRing,
        validator: BearerValidator,
        revoker: Revoker,
        forwarded: ForwardedPolicy,
    ) -> None:
        super().__init__()
        self.config = config
        self.storage = storage
        self.keyring = keyring
        self.validator = validator
        self.revoker = revoker
        secret = session_secret(config.keys_dir)
        self.throttle = LoginThrottle(storage, config.throttle, secret)
        #: the login page's known-device cookies (the throttle decides what they vouch for)
        self.devices = DeviceCodec(
            secret, config.issuer.startswith("https://"), config.throttle.device_ttl
        )
        #: who the client is, by the proxy's rule for X-Forwarded-For
        self.forwarded = forwarded
        self.passwords = PasswordPool(config.passwords.max_concurrent, config.passwords.queue_bound)

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        """One method per request, never a fall-through (``gateway.issuer.clientauth``)."""
        return clientauth.authenticate(self.query_client, request, methods, endpoint)

    def get_authorization_grant(self, request: Request) -> Any:
        try:
            return super().get_authorization_grant(request)
        except UnsupportedResponseTypeError as error:
            raise ResponseTypeNotSupported(error.redirect_uri) from None

    def query_client(self, client_id: str) -> Client | None:
        """Read on every request, never cached: a deleted client or a new secret holds at
        once on every replica."""
        if not isinstance(client_id, str) or len(client_id) > 64 or not storable(client_id):
            return None
        return self.storage.read(lambda conn: load_client(conn, client_id))

    def check_password(
        self, email: str, password: str, client_addr: str, device: KnownDevice | None = None
    ) -> User | None:
        """The user when the password matches, else None, in about the same time either way
        (RFC 6749 §10.10); raises ``TooManyAttempts`` when the throttle refuses the attempt
        (gateway/throttle.py), and ``PasswordsBusy`` (counted as no attempt) when the
        password pool's queue is full. ``device``: the login page's known-device cookie, if
        the browser sent a valid one (the password grant never has one)."""
        attempt = self.throttle.admit(normalize_email(email), client_addr, device=device)
        user = None
        if len(email) <= MAX_CREDENTIAL_LENGTH and len(password) <= MAX_CREDENTIAL_LENGTH:
            with self.storage.session() as session:
                user = find_user(session, email)
        if (
            not self.passwords.verify(user.password_hash if user else None, password)
            or user is None
        ):
            self.throttle.failed(attempt)
            return None
        self.throttle.succeeded(attempt)
        return user

    def save_token(self, token: dict[str, Any], request: Request) -> None:
        persist_token(self, token, request)

    def create_oauth2_request(self, request: Request) -> Request:
        return request

    def create_json_request(self, request: Any) -> Any:  # pragma: no cover - no JSON endpoints
        raise NotImplementedError

    def validate_requested_scope(self, scope: str | None) -> None:
        """Replaced per grant by ``ClientScopes``: the client's scope is the limit."""

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        headers = [(k, v) for k, v in headers if k.lower() not in ("cache-control", "pragma")]
        headers += NO_STORE
        if isinstance(body, dict):
            if body.get("error") == "invalid_client":
                # RFC 6749 §5.2: failed client authentication may (and with HTTP Basic must)
                # answer 401 with a challenge; we always do, so clients learn the scheme.
                status = 401
                headers = [(k, v) for k, v in headers if k.lower() != "www-authenticate"]
                headers.append(("WWW-Authenticate", 'Basic realm="gateway"'))
            return Response(json.dumps(body), status, dict(headers), media_type="application/json")
        return Response(body or b"", status, dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's hook for Flask-style signals; nothing listens here."""


class ClientScopes:
    """Grant mixin: a request may only ask for scopes registered on its client."""

    request: Request

    def validate_requested_scope(self) -> None:
        scope = self.request.payload.scope
        client = self.request.client
        if scope is None:
            return
        requested = set(scope.split())
        if not requested:
            raise InvalidScopeError("The 'scope' parameter is empty.")
        if not requested <= client.scopes:  # not named: they are the request's words
            raise InvalidScopeError("The client may not request some of these scopes.")
