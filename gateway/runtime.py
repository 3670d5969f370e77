"""``Gateway``: every long-lived part of one gateway process (the database, the key ring, the
revocation cache, the proxy, the password pool ...), the background tasks that keep the key
ring and the revocation sets fresh, and the health, readiness and metrics endpoints that report
on them. ``gateway.app`` serves it; ``gateway.issuer.assembly`` builds the issuer from it.

At start a warning names the routes served on the issuer's host (issue 15 §3): their upstreams'
pages share an origin with the login and consent pages, so their scripts can read those pages
and drive them, which no check of ours can tell from the user."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.config import Config
from gateway.dpop import Checker
from gateway.errors import ConfigError, GatewayError
from gateway.forwarded import ForwardedPolicy
from gateway.housekeeping import prune_expired
from gateway.introspect.notify import RevocationListener
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.revoker import Revoker
from gateway.introspect.validator import BearerValidator
from gateway.issuer.devices import DeviceCodec
from gateway.issuer.login import PasswordCheck
from gateway.issuer_host import warn_of_routes_on_issuer_host
from gateway.keys import KeyRing, session_secret
from gateway.listener import ConnectionLimits
from gateway.metrics import CONTENT_TYPE, STALENESS, Metrics
from gateway.passwords import PasswordPool
from gateway.proxy.app import Proxy
from gateway.proxy.decisions import DecisionEndpoint
from gateway.resources import Resources
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
        secret = session_secret(config.keys_dir)
        #: DPoP proofs (RFC 9449): one checker (one replay cache, one nonce source) for the
        #: token endpoint and the routes
        self.dpop = Checker(config.dpop, config.tokens.leeway, secret)
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
        #: the protected resources the routes make (RFC 8707, RFC 9728): one registry for what
        #: the issuer may mint tokens for, the metadata documents and the proxy's challenges
        self.resources = Resources.from_config(config)
        self.proxy = Proxy(
            config,
            self.validator,
            metrics=self.metrics,
            forwarded=self.forwarded,
            resources=self.resources,
            dpop=self.dpop,
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
