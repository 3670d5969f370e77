"""The issuer's own host: routes served there share an origin with the login and consent
pages, so their scripts can read and drive those pages (docs/security.md: The issuer's own
host). The gateway says so once, at start."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from gateway.config import Config
from gateway.hosts import parse_host

log = logging.getLogger("gateway")


def warn_of_routes_on_issuer_host(config: Config) -> None:
    shared = routes_on_issuer_host(config)
    if shared:
        log.warning(
            "routes served on the issuer's host (%s): %s. Their pages share an origin with "
            "the login and consent pages, and their scripts can read and drive those pages: "
            "fine for a trial; in production give the issuer a host of its own "
            "(docs/security.md: The issuer's own host)",
            urlsplit(config.issuer).hostname,
            ", ".join(shared),
        )


def routes_on_issuer_host(config: Config) -> list[str]:
    """The names of the routes that serve the issuer's host: a route without ``host`` serves
    every host; one with a ``host`` serves it when that names the issuer's (hosts as routes
    compare them, ``gateway.hosts``: case, a trailing dot and the port aside)."""
    issuer = _host_name(urlsplit(config.issuer).netloc)
    return [
        route.name or route.path
        for route in config.routes
        if route.host is None or _host_name(route.host) == issuer
    ]


def _host_name(value: str) -> str | None:
    try:
        return parse_host(value).name
    except ValueError:  # names no host a route could match
        return None
