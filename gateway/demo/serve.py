"""``gateway demo``: the gateway and its demo upstream in one process, with a walkthrough.

``run_demo`` makes the demo's user and clients (``clients.py``), moves the issuer to where the
demo listens when the config's is ``[server]``'s own (``demo_issuer``), starts the echo
upstream with the browser client's pages (``echo.py``, ``browser.py``), adds the demo's
routes (``routes.py``) and serves, through the listener's protocol like ``gateway serve``;
once the gateway listens, it prints the walkthrough: ``curl`` calls for the proxy's answers,
then the browser flow.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import uvicorn
import uvloop

from gateway.app import create_app
from gateway.config import Config, LoggingConfig, ScopesConfig
from gateway.demo.browser import APP_PATH, CALLBACK_PATH, DemoApp, browser_scope
from gateway.demo.clients import DEMO_EMAIL, DEMO_PASSWORD, browser_client, demo_client
from gateway.demo.echo import ASGIApp, start_echo_upstream
from gateway.demo.routes import READ_SCOPE, SCOPE_DESCRIPTIONS, demo_routes
from gateway.descriptors import fit_descriptor_limit
from gateway.errors import ConfigError
from gateway.serve import log_to_stderr, uvicorn_options
from gateway.storage import Storage


def demo_issuer(config: Config, host: str, port: int) -> str:
    """The demo's issuer: the config's, moved to ``host`` and ``port`` when it is where
    ``[server]`` listens (config.example.toml's), or discovery would send the browser flow to
    a port nothing listens on. A wildcard address is nowhere to browse to: the host stays."""
    if config.issuer.rstrip("/") != f"http://{config.server.host}:{config.server.port}":
        return config.issuer
    public = config.server.host if host in ("0.0.0.0", "::", "") else host
    public = f"[{public}]" if ":" in public else public
    return f"http://{public}:{port}"


def run_demo(config: Config, storage: Storage, host: str, port: int, upstream_port: int) -> None:
    """Set up the demo's accounts in ``storage`` (closed before serving: the served app opens
    its own), then serve on ``host:port`` with the echo upstream on ``upstream_port``."""
    if not 0 < upstream_port < 65536:
        raise ConfigError(
            "--upstream-port must be 1 to 65535: the demo app's redirect URI names it"
        )
    base = f"http://{host}:{port}"
    config = dataclasses.replace(config, issuer=demo_issuer(config, host, port))
    # the consent page says what the demo's scopes mean ([scopes.descriptions] still wins)
    descriptions = {**SCOPE_DESCRIPTIONS, **config.scopes.descriptions}
    config = dataclasses.replace(config, scopes=ScopesConfig(descriptions))
    creds = demo_client(config, storage)
    app_url = f"http://127.0.0.1:{upstream_port}"
    browser_client_id = browser_client(config, storage, app_url)
    storage.dispose()  # the served app opens its own
    auth = f"{creds['client_id']}:{creds['client_secret']}"
    pages = DemoApp(
        gateway_url=base,
        client_id=browser_client_id,
        redirect_uri=app_url + CALLBACK_PATH,
        home_uri=app_url + APP_PATH,
        api_path="/demo/orders/7",
        scope=browser_scope(READ_SCOPE),
        email=DEMO_EMAIL,
        password=DEMO_PASSWORD,
    )

    def walkthrough(demo: Config) -> None:
        print(
            f"""
Gateway demo on {base}: a user, a client and an echo upstream behind three routes.
  routes: /demo/public (no token), GET /demo/... (scope demo:read), POST /demo/... (demo:write)

  # 1. get a token (password grant) for user {DEMO_EMAIL}
  TOKEN=$(curl -s -u '{auth}' -d grant_type=password \\
      -d username={DEMO_EMAIL} -d password={DEMO_PASSWORD} -d scope=demo:read \\
      {base}/oauth/token | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')

  # 2. call a protected route: the upstream echoes the identity headers the gateway added
  curl -s -H "Authorization: Bearer $TOKEN" {base}/demo/orders/7

  # 3. no token: 401; a token without demo:write on a write route: 403 insufficient_scope
  curl -si {base}/demo/orders/7 | head -n 1
  curl -si -X POST -H "Authorization: Bearer $TOKEN" {base}/demo/orders | head -n 1

  # 4. revoke the token, then see the proxy refuse it
  curl -s -u '{auth}' -d token=$TOKEN {base}/oauth/revoke
  curl -si -H "Authorization: Bearer $TOKEN" {base}/demo/orders/7 | head -n 1

  # 5. the browser flow (OpenID Connect, code + PKCE): open this page, sign in as
  #    {DEMO_EMAIL} / {DEMO_PASSWORD}, allow; it shows the tokens, the ID token's claims
  #    and an API call through the gateway
  open {app_url}{APP_PATH}
""",
            flush=True,
        )

    serve_demo(config, host, port, upstream_port, walkthrough, pages)


def serve_demo(
    config: Config,
    host: str,
    port: int,
    upstream_port: int,
    ready: Callable[[Config], None],
    pages: ASGIApp | None = None,
) -> None:
    """Start the echo upstream (with the browser client's ``pages``), add the demo routes,
    serve; ``ready`` prints the walkthrough."""

    log_to_stderr()

    async def main() -> None:
        upstream = await start_echo_upstream("127.0.0.1", upstream_port, pages)
        try:
            demo = dataclasses.replace(
                config,
                routes=config.routes + demo_routes(upstream.url),
                # someone trying the gateway out reads the log in a terminal
                logging=LoggingConfig(config.logging.format or "text"),
            )
            fit_descriptor_limit(demo)
            options = uvicorn_options(host, port)
            server = uvicorn.Server(uvicorn.Config(create_app(demo, freeze_heap=True), **options))
            serving = asyncio.create_task(server.serve())
            while not server.started and not serving.done():
                await asyncio.sleep(0.05)
            if server.started:
                ready(demo)
            await serving
        finally:
            await upstream.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
