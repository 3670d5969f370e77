"""Running the gateway under uvicorn (uvloop + httptools), in one or N worker processes (and
``gateway demo``'s, ``gateway.demo.serve``, with the same options). Every way serves through
the listener's protocol (``gateway.listener``), which bounds what a client can hold."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import uvicorn

from gateway.app import GatewayApp, create_app
from gateway.config import Config, load_config
from gateway.descriptors import fit_descriptor_limit
from gateway.metrics import MULTIPROC_DIR


def app_factory() -> GatewayApp:
    """For uvicorn's worker processes: each loads the config named by ``$GATEWAY_CONFIG``."""
    return create_app(load_config(), freeze_heap=True)


#: the listener's protocol, by name: spawned worker processes import it
PROTOCOL = "gateway.listener:GatewayProtocol"


def uvicorn_options(host: str, port: int) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "loop": "uvloop",
        # the listener's limits ([server] keys, keep_alive_timeout among them) come with the
        # app: gateway.listener.ConnectionLimits
        "http": PROTOCOL,
        # X-Forwarded-* trust is the proxy's own decision ([proxy] trusted_proxies)
        "proxy_headers": False,
        "server_header": False,
        "date_header": False,  # the upstream's Date passes through; no duplicate
        "log_level": "info",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }


def log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(config: Config, host: str, port: int, workers: int) -> None:
    log_to_stderr()
    fit_descriptor_limit(config)
    options = uvicorn_options(host, port)
    # N workers share a metrics directory; one inherited is replaced, never added to
    shared = workers > 1 or MULTIPROC_DIR in os.environ
    with _metrics_directory() if shared else contextlib.nullcontext():
        if workers > 1:
            # each worker builds its own app (and caches) from the same config file
            uvicorn.run("gateway.serve:app_factory", factory=True, workers=workers, **options)
        else:
            uvicorn.run(create_app(config, freeze_heap=True), **options)


@contextlib.contextmanager
def _metrics_directory() -> Iterator[None]:
    """A fresh private ``$PROMETHEUS_MULTIPROC_DIR`` for this run's workers (spawned, they
    import prometheus-client with it set; see ``gateway.metrics``), removed at exit: a scrape
    sums this run's workers, never the files of an earlier one."""
    directory = tempfile.mkdtemp(prefix="gateway-metrics-")  # mode 0700
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROC_DIR]
        shutil.rmtree(directory, ignore_errors=True)
