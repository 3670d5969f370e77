"""The file-descriptor budget: how many client connections one process can hold.

uvloop (libuv 1.48) meets EMFILE at ``accept`` by closing a descriptor it keeps in
reserve, accepting and closing every pending connection, and reopening it: the server neither
crashes nor hears of it, but while the process has no descriptor left, its own work (key
reloads, database connections, upstream connections) fails. So the connection capacity is
kept below the soft ``RLIMIT_NOFILE``, with room for the process's own descriptors and its
upstream connections; ``fit_descriptor_limit`` raises the soft limit toward the hard one at
start as far as ``max_connections`` needs, and warns when that is not enough.
"""

from __future__ import annotations

import logging
import os
import resource
from urllib.parse import urlsplit

from gateway.config import Config

log = logging.getLogger("gateway.listener")

#: descriptors kept for the process's own work beside client and upstream connections: its
#: database pool (SQLite holds three files a connection), key and log files, the event loop's
RESERVED_DESCRIPTORS = 64


def _open_descriptors() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 0


def _upstream_connections(config: Config) -> int:
    """The most upstream connections the proxy's pool holds: so many per upstream origin."""
    origins = {urlsplit(route.upstream)[:2] for route in config.routes}
    return config.proxy.max_connections_per_origin * len(origins)


def connection_capacity(config: Config) -> int:
    """The client connections this process may hold: ``[server] max_connections``, or fewer
    when the soft ``RLIMIT_NOFILE`` could not hold them beside the descriptors open now,
    ``RESERVED_DESCRIPTORS`` and the upstream connections (at most half of what is left)."""
    wanted = config.server.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    spare = soft - _open_descriptors() - RESERVED_DESCRIPTORS
    upstream = min(_upstream_connections(config), spare // 2)
    return max(1, min(wanted, spare - upstream))


def fit_descriptor_limit(config: Config) -> None:
    """At start: raise the soft ``RLIMIT_NOFILE`` toward the hard limit as far as
    ``max_connections`` needs (worker processes inherit it); warn when it stays short."""
    clients = config.server.max_connections
    wanted = (
        _open_descriptors()
        + RESERVED_DESCRIPTORS
        + clients
        + min(clients, _upstream_connections(config))
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file descriptor limit to %d: %s", raised, exc)
    capacity = connection_capacity(config)
    if capacity < clients:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        log.warning(
            "[server] max_connections = %d does not fit in the file descriptor limit (%d): "
            "a process serves at most %d client connections and answers more with 503; "
            "raise the limit (ulimit -n, systemd's LimitNOFILE=) to serve more",
            clients,
            limit,
            capacity,
        )
