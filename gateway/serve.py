"""Running the gateway under uvicorn (uvloop + httptools), in one or N worker processes."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from gateway.app import GatewayApp, create_app
from gateway.config import Config, load_config


def app_factory() -> GatewayApp:
    """For uvicorn's worker processes: each loads the config named by ``$GATEWAY_CONFIG``."""
    return create_app(load_config())


def serve(config: Config, host: str, port: int, workers: int) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        # X-Forwarded-* trust is the proxy's own decision ([proxy] trusted_proxies)
        "proxy_headers": False,
        "server_header": False,
        "log_level": "info",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1:
        # each worker builds its own app (and caches) from the same config file
        uvicorn.run("gateway.serve:app_factory", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(config), **options)
