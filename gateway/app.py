"""``create_app(config)``: the whole gateway as one ASGI application.

Paths the gateway owns (``/oauth``, ``/.well-known``, ``/healthz``, ``/readyz``) go to a Starlette
app (the protected resources' RFC 9728 metadata among them); everything else goes straight to
the proxy, a raw ASGI app, so the hot path pays for no framework routing; so does
``/decisions``, the proxy's decisions for an edge in front. The lifespan owns the shared
resources on ``Gateway``: the database, the key ring, the revocation cache and the background
tasks that keep the last two fresh.

At start a warning names the routes served on the issuer's host (issue 15 §3): their upstreams'
pages share an origin with the login and consent pages, so their scripts can read those pages
and drive them, which no check of ours can tell from the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.accesslog import error_code
from gateway.config import Config, is_reserved
from gateway.context import REQUEST_ID, RequestContext, received_id
from gateway.errors import ConfigError, GatewayError
from gateway.forwarded import ForwardedPolicy
from gateway.housekeeping import prune_expired
from gateway.introspect.notify import RevocationListener
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.revoker import Revoker
from gateway.introspect.validator import BearerValidator
from gateway.issuer.authorize import AuthorizationEndpoint
from gateway.issuer.client_documents import MetadataDocumentClients
from gateway.issuer.devices import DeviceCodec
from gateway.issuer.discovery import JWKSEndpoint, MetadataEndpoint
from gateway.issuer.grants import (
    PKCE,
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    PasswordGrant,
    RefreshTokenGrant,
)
from gateway.issuer.login import PasswordCheck
from gateway.issuer.logout import LogoutEndpoint
from gateway.issuer.oauth_request import RequestReader
from gateway.issuer.records import ClientLookup
from gateway.issuer.registration import REGISTER, RegistrationEndpoint
from gateway.issuer.resource_indicators import ResourceIndicators
from gateway.issuer.rotation import RefreshRotation
from gateway.issuer.server import Server
from gateway.issuer.session import SessionCodec, Sessions
from gateway.issuer.signout import SignOut
from gateway.issuer.token_endpoints import IntrospectionEndpoint, RevocationEndpoint, TokenEndpoint
from gateway.issuer.tokens import TokenGenerator, TokenStore
from gateway.issuer.userinfo import UserInfoEndpoint
from gateway.issuer_host import warn_of_routes_on_issuer_host
from gateway.keys import KeyRing, session_secret
from gateway.listener import ConnectionLimits
from gateway.metrics import CONTENT_TYPE, STALENESS, Metrics
from gateway.passwords import PasswordPool
from gateway.proxy.app import Proxy
from gateway.proxy.decisions import DecisionEndpoint, is_decision_path
from gateway.resource_metadata import ResourceMetadataEndpoint, is_metadata_path
from gateway.resources import METADATA_PREFIX, Resources, registrable_scopes
from gateway.storage import Storage
from gateway.throttle import LoginThrottle

log = logging.getLogger("gateway")


class Gateway:
    """Every long-lived part of one gateway process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics(self._gauge_values)
        self.storage = Storage(config.database_url)
        self.storage.on_outage = self.metrics.database_error
        self.keyring = KeyRing(config.keys_dir)
        if not self.keyring.keys:
            raise ConfigError(f"{config.keys_dir}: no signing key; run 'gateway init'")
        self.revocations = RevocationCache()
        self.validator = BearerValidator(
            self.keyring, self.revocations, config.issuer, config.tokens.leeway
        )
        self.revoker = Revoker(
            self.storage, self.revocations, config.tokens.access_token_ttl, config.tokens.leeway
        )
        #: who a client is behind ``[proxy] trusted_proxies``: one policy, for the issuer and the
        #: proxy alike
        self.forwarded = ForwardedPolicy(config.proxy.trusted_proxies)
        #: the protected resources the routes make: what the issuer may mint tokens for
        self.resources = Resources.from_config(config)
        secret = session_secret(config.keys_dir)
        self.throttle = LoginThrottle(self.storage, config.throttle, secret)
        self.throttle.on_refusal = self.metrics.login_throttled
        #: the login page's known-device cookies (the throttle decides what they vouch for)
        self.devices = DeviceCodec(
            secret, config.issuer.startswith("https://"), config.throttle.device_ttl
        )
        self.passwords = PasswordPool(config.passwords.max_concurrent, config.passwords.queue_bound)
        self.passwords.on_refusal = self.metrics.password_refused
        self.password_check = PasswordCheck(
            self.storage, self.throttle, self.passwords, self.devices
        )
        #: the protected resources the routes make (RFC 8707, RFC 9728): one registry for the
        #: metadata documents and the proxy's challenges
        self.resources = Resources.from_config(config)
        self.proxy = Proxy(
            config,
            self.validator,
            metrics=self.metrics,
            forwarded=self.forwarded,
            resources=self.resources,
        )
        self.decisions = DecisionEndpoint(config, self.proxy.core)
        #: read by the listener's protocol (gateway/listener.py), one per connection
        self.connection_limits = ConnectionLimits(config, self.metrics.listener_closed)
        # Blocking upkeep (database syncs, pruning, key reloads) runs on threads of its own, so
        # that stopping can wait for a job in flight instead of abandoning it mid-query.
        self._upkeep = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway-upkeep")
        self.listener: RevocationListener | None = None
        if self.storage.is_postgres and config.revocation.notify:
            self.listener = RevocationListener(self.storage, self.revocations, self._upkeep)
        self._tasks: list[asyncio.Task[None]] = []
        warn_of_routes_on_issuer_host(config)

    # --- background upkeep -----------------------------------------------------------------

    async def _every(self, seconds: float, job: Callable[[], Any], what: str) -> None:
        """Run ``job`` every ``seconds``, first after one interval (``start`` did the rest)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(seconds)
            try:
                await loop.run_in_executor(self._upkeep, job)
            except GatewayError as exc:
                log.warning("%s failed: %s", what, exc)
            except Exception:
                log.exception("%s failed", what)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._upkeep, self.revocations.try_sync, self.storage)
        self.passwords.start()
        # an admitted verification holds a threadpool thread while it waits (gateway/passwords.py):
        # grow the threadpool by as many, so password work never takes one from anything else
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens += self.passwords.capacity
        jobs = [
            self._every(
                self.config.revocation.sync_interval,
                lambda: self.revocations.sync(self.storage),
                "revocation sync",
            ),
            self._every(
                self.config.keys.reload_interval, self.keyring.reload_if_changed, "key reload"
            ),
            self._every(
                self.config.housekeeping.interval,
                lambda: prune_expired(self.storage),
                "housekeeping",
            ),
        ]
        if self.listener is not None:
            jobs.append(self.listener.run())
        if self.metrics.multiprocess:
            jobs.append(self._refresh_gauges())
        self._tasks = [asyncio.create_task(job) for job in jobs]
        await self.proxy.startup()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.proxy.shutdown()
        # a job may still be running on its thread: let it finish before the pool closes
        await asyncio.get_running_loop().run_in_executor(None, self._upkeep.shutdown)
        await asyncio.get_running_loop().run_in_executor(None, self.passwords.shutdown)
        self.storage.dispose()
        self.metrics.close()

    # --- health ------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    def _gauge_values(self) -> dict[str, float]:
        return {
            "gateway_revocation_entries": len(self.revocations),
            STALENESS: self.revocations.staleness(),
            "gateway_revocation_listener_connected": int(
                self.listener is not None and self.listener.connected.is_set()
            ),
            "gateway_signing_keys": len(self.keyring.keys),
            "gateway_password_verifications": self.passwords.admitted,
        }

    async def _refresh_gauges(self) -> None:
        """Under N workers, this worker's gauges for the scrapes other workers answer."""
        while True:
            self.metrics.refresh()
            await asyncio.sleep(1.0)

    async def scrape(self, request: Request) -> Response:
        return Response(
            self.metrics.render(), headers={"Cache-Control": "no-store"}, media_type=CONTENT_TYPE
        )

    async def readyz(self, request: Request) -> Response:
        staleness = self.revocations.staleness()
        checks = {
            "signing_key": bool(self.keyring.keys),
            "revocations_fresh": staleness <= self.config.revocation.max_staleness,
        }
        ready = all(checks.values())
        body = {
            "status": "ready" if ready else "unready",
            "checks": checks,
            "revocation_staleness_seconds": None if staleness == float("inf") else staleness,
        }
        return JSONResponse(body, 200 if ready else 503, {"Cache-Control": "no-store"})


def _error_handler(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # Starlette's own 404 / 405 for the gateway's paths
        body = {
            "error": "not_found" if exc.status_code == 404 else "invalid_request",
            "error_description": str(exc.detail),
        }
        return JSONResponse(body, exc.status_code, exc.headers)
    if isinstance(exc, GatewayError):
        status, raw_headers, payload = exc.response_parts()
        return Response(payload, status, {k.decode(): v.decode() for k, v in raw_headers})
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "server_error"}, 500, {"Cache-Control": "no-store"})


def issuer_routes(gateway: Gateway) -> list[Route]:
    """The issuer, assembled: Authlib's server with the grants bound to what each uses, and
    the endpoints, each given exactly its collaborators."""
    config, tokens = gateway.config, gateway.config.tokens
    storage, revoker, keyring = gateway.storage, gateway.revoker, gateway.keyring
    registered_scopes = registrable_scopes(config)
    stored = clients = ClientLookup(storage, registered_scopes)
    if config.registration.metadata_documents:
        clients = MetadataDocumentClients.from_config(config, storage)
    indicators = ResourceIndicators(gateway.resources, config.audience)
    server = Server(clients, TokenStore(storage, revoker, tokens.refresh_token_ttl))
    server.register_token_generator(
        "default", TokenGenerator(keyring, config.issuer, config.audience, tokens.access_token_ttl)
    )
    code_grant = AuthorizationCodeGrant.bound(
        storage, revoker, tokens.authorization_code_ttl, indicators
    )
    server.register_grant(code_grant, [PKCE(required=True)])
    server.register_grant(PasswordGrant.bound(gateway.password_check, indicators))
    rotation = RefreshRotation(
        storage, revoker, config.keys_dir, tokens.rotate_refresh_tokens, tokens.refresh_reuse_grace
    )
    server.register_grant(RefreshTokenGrant.bound(rotation, indicators))
    server.register_grant(ClientCredentialsGrant.bound(storage, indicators))
    reader = RequestReader(config.issuer, gateway.forwarded)
    secure = config.issuer.startswith("https://")
    codec = SessionCodec(session_secret(config.keys_dir), secure, config.sessions.lifetime)
    sessions = Sessions(storage, config.sessions.lifetime, config.sessions.idle_timeout)
    sign_out = SignOut(revoker, config.sessions.logout_revokes_tokens)
    authorization = AuthorizationEndpoint(
        server,
        reader,
        config.issuer,
        codec,
        sessions,
        sign_out,
        gateway.password_check,
        storage,
        config.scopes.descriptions,
        indicators,
    )
    # logout fetches no metadata document: such clients register no logout redirect URIs
    logout = LogoutEndpoint(reader, stored, config.issuer, keyring, codec, sessions, sign_out)
    token = TokenEndpoint(server, reader, gateway.metrics)
    revocation = RevocationEndpoint(server, reader, gateway.validator, revoker, storage)
    introspection = IntrospectionEndpoint(server, reader, gateway.validator, storage, config.issuer)
    metadata = MetadataEndpoint(
        config.issuer,
        keyring,
        storage,
        gateway.resources.scopes,
        config.registration,
        registered_scopes,
    )
    userinfo = UserInfoEndpoint(gateway.validator, config.audience, storage)
    # RFC 9728: every method reaches the endpoint, which answers 405 itself
    resource_metadata = ResourceMetadataEndpoint(gateway.resources, config.issuer)
    registration = RegistrationEndpoint(
        config, storage, revoker, gateway.forwarded, registered_scopes
    )
    return [
        Route(METADATA_PREFIX, resource_metadata),
        Route(METADATA_PREFIX + "/{rest:path}", resource_metadata),
        Route("/.well-known/oauth-authorization-server", metadata.metadata, methods=["GET"]),
        Route("/.well-known/openid-configuration", metadata.openid_configuration, methods=["GET"]),
        Route("/.well-known/jwks.json", JWKSEndpoint(keyring).jwks, methods=["GET"]),
        Route("/oauth/authorize", authorization.authorize, methods=["GET", "POST"]),
        Route("/oauth/logout", logout.logout, methods=["GET", "POST"]),
        Route("/oauth/token", token.token, methods=["POST"]),
        Route("/oauth/revoke", revocation.revoke, methods=["POST"]),
        Route("/oauth/introspect", introspection.introspect, methods=["POST"]),
        Route("/oauth/userinfo", userinfo.userinfo, methods=["GET", "POST"]),
        Route("/oauth/me", userinfo.me, methods=["GET"]),
        *registration.routes(),
    ]


def create_app(config: Config, freeze_heap: bool = False) -> GatewayApp:
    """The gateway; ``freeze_heap`` (for serving processes, not tests) moves everything alive
    once start-up is done out of the cyclic collector's sight (``gc.freeze``)."""
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        if freeze_heap:
            # Start-up leaves many long-lived objects (Authlib, SQLAlchemy, Jinja, key ring,
            # route table). Every full collection would walk them all, set off by short-lived
            # request objects surviving two collections: a cost on every proxied request and
            # stalls in the tail of its latency. Collect once, then freeze.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await gateway.stop()

    ops = [Route("/metrics", gateway.scrape, methods=["GET"])] if config.metrics.enabled else []
    issuer = Starlette(
        routes=[
            *issuer_routes(gateway),
            Route("/healthz", gateway.healthz, methods=["GET"]),
            Route("/readyz", gateway.readyz, methods=["GET"]),
            *ops,
        ],
        exception_handlers={
            Exception: _error_handler,
            GatewayError: _error_handler,
            HTTPException: _error_handler,
        },
        lifespan=lifespan,
    )
    # Starlette answers "/oauth/token/" with a 307 to "/oauth/token" built from the client's
    # Host header, on plain http: the gateway's paths are exact, anything else is 404
    issuer.router.redirect_slashes = False
    return GatewayApp(gateway, issuer)


class GatewayApp:
    """Dispatch by path: the gateway's own endpoints, or the proxy."""

    def __init__(self, gateway: Gateway, issuer: Starlette) -> None:
        self.gateway = gateway
        self.issuer = issuer
        self.proxy = gateway.proxy
        self.access_log = gateway.proxy.access_log
        #: read by the listener's protocol (``gateway.listener.Limited``)
        self.connection_limits = gateway.connection_limits
        #: the gateway's own endpoints: a request's path is its route in the access log
        self._endpoints = frozenset(r.path for r in issuer.routes if isinstance(r, Route))
        #: RFC 7592's configuration endpoints, one path per client: one route in the log
        self._configuration = REGISTER + "/{client_id}" in self._endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if not is_reserved(path):
                await self.proxy(scope, receive, send)
                return
            context = RequestContext(
                scope, received_id(scope["headers"]), self.gateway.forwarded.is_trusted
            )
            decision = is_decision_path(path)
            if decision:
                context.route = "/decisions"
            elif path in self._endpoints:
                context.route = path
            elif is_metadata_path(path):
                context.route = METADATA_PREFIX
            elif path.startswith(REGISTER + "/") and self._configuration:
                context.route = REGISTER + "/{client_id}"

            async def receive_counted() -> Any:
                message = await receive()
                context.bytes_in += len(message.get("body", b""))
                return message

            async def send_logged(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    context.status = message["status"]
                    headers = [*message.get("headers", []), (REQUEST_ID, context.request_id)]
                    if not decision:
                        # uvicorn's own Date is off so proxied responses keep just the
                        # upstream's; an edge's decision needs none
                        headers.append((b"date", formatdate(usegmt=True).encode()))
                    message["headers"] = headers
                elif message["type"] == "http.response.body":
                    body = message.get("body", b"")
                    context.bytes_out += len(body)
                    if context.status >= 400 and context.reason is None:
                        context.reason = error_code(body)
                await send(message)

            try:
                if decision:
                    await self.gateway.decisions(scope, receive_counted, send_logged, context)
                else:
                    await self.issuer(scope, receive_counted, send_logged)
            finally:
                self.access_log.write(context)
            return
        await self.issuer(scope, receive, send)
