"""``create_app(config)``: the whole gateway as one ASGI application.

Paths the gateway owns (``/oauth``, ``/.well-known``, ``/healthz``, ``/readyz``) go to a Starlette
app (the protected resources' RFC 9728 metadata among them); everything else goes straight to
the proxy, a raw ASGI app, so the hot path pays for no framework routing; so does
``/decisions``, the proxy's decisions for an edge in front. The lifespan starts and stops
``gateway.runtime.Gateway``, which owns the long-lived parts; ``gateway.issuer.assembly`` builds
the issuer's endpoints from it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, MutableMapping
from email.utils import formatdate
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.accesslog import error_code
from gateway.config import Config, is_reserved
from gateway.context import REQUEST_ID, RequestContext, received_id
from gateway.errors import GatewayError
from gateway.issuer.assembly import issuer_routes
from gateway.issuer.registration import REGISTER
from gateway.proxy.decisions import is_decision_path
from gateway.resource_metadata import is_metadata_path
from gateway.resources import METADATA_PREFIX
from gateway.runtime import Gateway

log = logging.getLogger("gateway")


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
