"""The proxy as a raw ASGI app: decide (``core.py``) -> rewrite -> forward.

Every step before forwarding answers a failure with its ``GatewayError`` as JSON (404, 405,
400, 401, 403; on an ``mcp = true`` route the message is read and checked first, ``mcp.py``:
400, 403, 408, 413, 415). Upstream failures answer 502 / 504 while no response has started,
and abort the client's response once one has. Nothing raises out of ``__call__``: an
unexpected error is logged with the route's name and answered 502 (or aborts), never a
traceback. Every request has one ``RequestContext`` (``gateway.context``), ends with one
access-log line made from it, and carries one request id: forwarded upstream and returned to
the client, on errors too.

The hot path touches no database and does no blocking I/O: the route table, key ring and
revocation set are in memory, and the upstream client keeps pooled connections per origin.
Headers stay bytes from the ASGI server to the upstream client; the path is decoded once for
matching and re-encoded only when it is not already canonical.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from gateway.accesslog import AccessLog
from gateway.config import Config
from gateway.context import REQUEST_ID, RequestContext
from gateway.dpop import Checker
from gateway.errors import GatewayError, UpstreamUnavailable
from gateway.forwarded import ForwardedPolicy
from gateway.introspect.validator import BearerValidator
from gateway.metrics import Metrics
from gateway.proxy.core import Allowed, DecisionCore, Denied
from gateway.proxy.exchange import Deadlines, Exchange, Receive, Send
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.headers import Header, HeaderPolicy, IncomingHeaders
from gateway.proxy.mcp import McpGuard
from gateway.proxy.paths import upstream_target
from gateway.proxy.routes import Route
from gateway.resources import Resources

log = logging.getLogger("gateway.proxy")

#: request headers an MCP message read whole is not sent with (its length is set anew)
_RESENT = frozenset({b"content-length", b"expect"})


class Proxy:
    def __init__(
        self,
        config: Config,
        validator: BearerValidator,
        forwarder: Forwarder | None = None,
        *,
        metrics: Metrics | None = None,
        access_log: AccessLog | None = None,
        forwarded: ForwardedPolicy | None = None,
        resources: Resources | None = None,
        dpop: Checker | None = None,
    ) -> None:
        """``resources``: the gateway's registry (default: built from ``config``); ``dpop``:
        its DPoP checker (default: one of the proxy's own, its nonces from a random key)."""
        self._headers = HeaderPolicy(config.proxy.identity_headers, config.proxy.assertion.header)
        #: the gateway's one policy for ``[proxy] trusted_proxies`` (its issuer reads it too)
        self._forwarded = forwarded or ForwardedPolicy(config.proxy.trusted_proxies)
        self._idle_timeout = config.proxy.idle_timeout
        self._forwarder = forwarder or Forwarder(config.proxy.connect_timeout, config.proxy.pool)
        self.metrics = metrics or Metrics(dict)
        #: shared with the decision endpoint (gateway/proxy/decisions.py)
        self.core = DecisionCore(
            config,
            validator,
            self._headers,
            self.metrics,
            resources or Resources.from_config(config),
            dpop or Checker(config.dpop, config.tokens.leeway, os.urandom(32)),
        )
        self.access_log = access_log or AccessLog(config.logging.format or "json")
        self._deadlines = Deadlines()
        #: the loop serving: on Python 3.11 each ``asyncio.get_running_loop()`` is a getpid()
        #: system call (a check against fork), which a request need not pay
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._forwarder.start()

    async def shutdown(self) -> None:
        self._loop = None
        self._deadlines.close()
        await self._forwarder.close()
        self.access_log.close()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Serve one HTTP request; other scope types are not proxied and end at once."""
        if scope["type"] != "http":
            return
        route: Route | None = None
        exchange: Exchange | None = None
        status = "502"
        incoming = self._headers.split_request(scope["headers"])
        context = RequestContext(scope, incoming.request_id, self._forwarded.is_trusted)
        try:
            raw_path = context.raw_path
            proofs = incoming.dpop
            decision = self.core.decide(
                raw_path,
                incoming.host,
                context.method,  # as sent: a DPoP proof signs the method on the wire
                incoming.authorization,
                incoming.method_overrides,
                drops_overrides=True,
                proofs=proofs,
                origin=self._origin(scope, incoming, context.peer) if proofs else None,
            )
            if decision.token is not None:  # a 403 names whose token it refused too
                context.client_id, context.sub = decision.token.client_id, decision.token.sub
            if isinstance(decision, Denied):
                route = decision.route  # named in the metrics and the log
                if route is not None:
                    context.route = route.name
                raise decision.error
            route, path = decision.route, decision.path
            context.route = route.name
            headers = incoming.kept + decision.identity
            config = route.config
            if config.forward_token:
                headers += [(b"authorization", v.encode("latin-1")) for v in incoming.authorization]
                headers += [(b"dpop", v.encode("latin-1")) for v in proofs]
            if decision.method_override is not None:
                # the method checked, under each name the client used, spelled with "-"
                method = decision.method_override.encode("ascii")
                headers += [(n.replace(b"_", b"-"), method) for n, _ in incoming.method_overrides]
            host = decision.host
            headers += self._forwarded.headers(
                incoming.forwarded,
                context.peer,
                scope["scheme"],
                host.authority if host is not None else None,
            )
            headers.append((REQUEST_ID, context.request_id))
            target = upstream_target(
                raw_path, path, route.upstream_path(path), scope.get("query_string", b"")
            )
            exchange = Exchange(
                receive,
                send,
                config.timeout,
                self._idle_timeout,
                self._deadlines,
                context,
                self._loop or asyncio.get_running_loop(),
                self.metrics,
            )
            if decision.token is not None and decision.token.jkt is not None:
                nonce = self.core.dpop.nonce()  # the next one, for the client's next proof
                exchange.nonce = None if nonce is None else nonce.encode("ascii")
            if route.mcp is not None and (context.method == "POST" or incoming.has_body):
                await self._relay_message(
                    route.mcp, exchange, decision, incoming.kept, headers, target
                )
            else:
                await exchange.run(
                    self._forwarder,
                    route.upstream,
                    context.method,
                    target,
                    headers,
                    incoming.has_body,
                )
            if exchange.started:
                status = str(context.status)
            else:
                # a normal return before any response means the client left while we waited
                status = context.reason = "client_closed"
                context.status = 499  # nginx's code for it, which log pipelines know
        except GatewayError as exc:
            if route is not None and exc.status_code >= 500:
                cause = f" ({exc.__cause__})" if exc.__cause__ else ""
                log.warning("route %r: %s%s", route.name, exc.description, cause)
            status = _error_status(exchange, exc)
            context.reason = exc.reason
            if exchange is None or not exchange.started:
                await _send_error(send, exc, context)
        except Exception:
            log.exception("route %r: unexpected error while proxying", route and route.name)
            failure = UpstreamUnavailable()
            status = _error_status(exchange, failure)
            context.reason = failure.reason
            if exchange is None or not exchange.started:
                await _send_error(send, failure, context)
        finally:
            name = route.name if route is not None else "(no route)"
            ended = time.perf_counter()  # one clock read for the metrics and the log
            self.metrics.observe(name, status, ended - context.started)
            self.access_log.write(context, ended)

    async def _relay_message(
        self,
        guard: McpGuard,
        exchange: Exchange,
        decision: Allowed,
        received: list[Header],
        headers: list[Header],
        target: bytes,
    ) -> None:
        """An ``mcp = true`` route's message (``mcp.py``): read whole, checked, its tool decided
        on by the core, then relayed as it was read, with its length. A refusal is raised as
        the first step's are. ``received``: the client's end-to-end headers, as sent."""
        guard.check_framing(received)
        body = await exchange.read_whole(guard.max_body)
        if body is None:
            return  # the client went away while sending it: nothing went upstream
        tool = guard.read(body, received).tool
        if tool is not None:
            denied = self.core.authorize_tool(decision, guard, tool)
            if denied is not None:
                raise denied.error
        # the body is here: its length is known, and a client's Expect has been answered
        headers = [header for header in headers if header[0] not in _RESENT]
        headers.append((b"content-length", b"%d" % len(body)))
        route = decision.route
        await exchange.run(
            self._forwarder, route.upstream, exchange.context.method, target, headers, True, body
        )

    def _origin(self, scope: dict[str, Any], incoming: IncomingHeaders, peer: str | None) -> str:
        """``scheme://host`` as the client used it: the request's, or what a trusted proxy in
        front reports (``gateway.forwarded``); the host as sent, unnormalised."""
        host = None if incoming.host is None else incoming.host.decode("latin-1")
        return self._forwarded.origin(incoming.forwarded, peer, scope["scheme"], host)


def _error_status(exchange: Exchange | None, error: GatewayError) -> str:
    """The status the client saw: the error's, or "aborted" once a response had begun."""
    return "aborted" if exchange is not None and exchange.started else str(error.status_code)


async def _send_error(send: Send, error: GatewayError, context: RequestContext) -> None:
    context.status, headers, body = error.response_parts()
    headers.append((REQUEST_ID, context.request_id))
    await send({"type": "http.response.start", "status": context.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    context.bytes_out = len(body)
