"""The proxy as a raw ASGI app: decide (``decision.py``) -> rewrite -> forward.

Every step before forwarding answers a failure with its ``GatewayError`` as JSON (404, 405,
400, 401, 403). Upstream failures answer 502 / 504 while no response has started, and abort
the client's response once one has. Nothing raises out of ``__call__``: an unexpected error
is logged with the route's name and answered 502 (or aborts), never a traceback.

The hot path touches no database and does no blocking I/O: the route table, key ring and
revocation set are in memory, and the upstream client keeps pooled connections per origin.
Headers stay bytes from the ASGI server to the upstream client; the path is decoded once for
matching and re-encoded only when it is not already canonical.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.config import Config
from gateway.errors import GatewayError, UpstreamUnavailable
from gateway.introspect.validator import BearerValidator
from gateway.metrics import ProxyMetrics
from gateway.proxy.decision import DecisionCore, Denied
from gateway.proxy.exchange import Deadlines, Exchange, Receive, Send
from gateway.proxy.forwarded import ForwardedPolicy
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.headers import HeaderPolicy
from gateway.proxy.paths import encode_path, upstream_target
from gateway.proxy.routes import Route

log = logging.getLogger("gateway.proxy")


class Proxy:
    def __init__(
        self, config: Config, validator: BearerValidator, forwarder: Forwarder | None = None
    ) -> None:
        self._headers = HeaderPolicy(config.proxy.identity_headers, config.proxy.assertion.header)
        #: shared with the decision endpoint (gateway/proxy/decisions.py)
        self.decisions = DecisionCore(config, validator, self._headers)
        self._forwarded = ForwardedPolicy(config.proxy.trusted_proxies)
        self._idle_timeout = config.proxy.idle_timeout
        self._forwarder = forwarder or Forwarder(config.proxy.connect_timeout, config.proxy.pool)
        self.metrics = ProxyMetrics()
        self._deadlines = Deadlines()

    async def startup(self) -> None:
        await self._forwarder.start()

    async def shutdown(self) -> None:
        self._deadlines.close()
        await self._forwarder.close()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Serve one HTTP request; other scope types are not proxied and end at once."""
        if scope["type"] != "http":
            return
        route: Route | None = None
        exchange: Exchange | None = None
        started = time.perf_counter()
        status = "502"
        try:
            raw_path = scope.get("raw_path") or encode_path(scope["path"]).encode()
            incoming = self._headers.split_request(scope["headers"])
            decision = self.decisions.decide(
                raw_path, incoming.host, scope["method"], incoming.authorization
            )
            if isinstance(decision, Denied):
                route = decision.route  # named in the metrics and the log
                raise decision.error
            route, path = decision.route, decision.path
            headers = incoming.kept + decision.identity
            config = route.config
            if config.forward_token:
                headers += [(b"authorization", v.encode("latin-1")) for v in incoming.authorization]
            client = scope.get("client")
            headers += self._forwarded.headers(
                incoming.forwarded, client[0] if client else None, scope["scheme"], incoming.host
            )
            target = upstream_target(
                raw_path, path, route.upstream_path(path), scope.get("query_string", b"")
            )
            exchange = Exchange(receive, send, config.timeout, self._idle_timeout, self._deadlines)
            await exchange.run(
                self._forwarder, route.upstream, scope["method"], target, headers, incoming.has_body
            )
            # a normal return before any response means the client left while we waited
            status = str(exchange.status) if exchange.started else "client_closed"
        except GatewayError as exc:
            if route is not None and exc.status_code >= 500:
                cause = f" ({exc.__cause__})" if exc.__cause__ else ""
                log.warning("route %r: %s%s", route.name, exc.description, cause)
            status = _error_status(exchange, exc)
            if exchange is None or not exchange.started:
                await _send_error(send, exc)
        except Exception:
            log.exception("route %r: unexpected error while proxying", route and route.name)
            status = _error_status(exchange, UpstreamUnavailable())
            if exchange is None or not exchange.started:
                await _send_error(send, UpstreamUnavailable())
        finally:
            name = route.name if route is not None else "(no route)"
            self.metrics.observe(name, status, time.perf_counter() - started)


def _error_status(exchange: Exchange | None, error: GatewayError) -> str:
    """The status the client saw: the error's, or "aborted" once a response had begun."""
    return "aborted" if exchange is not None and exchange.started else str(error.status_code)


async def _send_error(send: Send, error: GatewayError) -> None:
    status, headers, body = error.response_parts()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
