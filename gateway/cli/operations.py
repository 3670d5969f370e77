"""The ``gateway`` commands that run and keep the gateway: ``init``, ``serve``, ``demo``,
``key``, ``token``, ``db`` and ``edge-config``."""

from __future__ import annotations

import argparse
import os
import time

from gateway import accounts
from gateway.cli.setup import init, out, revoker_for, when, with_storage
from gateway.config import Config
from gateway.edge import edge_config
from gateway.errors import ConfigError
from gateway.keys import KeyRing, create_key, retire_key
from gateway.proxy.routes import RouteTable
from gateway.storage import Storage, current_revision, head_revision


@with_storage
def cmd_init(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    print(
        f"database ready at revision {current_revision(storage.engine)}; keys in {config.keys_dir}"
    )


def cmd_serve(config: Config, args: argparse.Namespace) -> None:
    from gateway.serve import serve

    # a bad route table is a start-up error (exit 2), before any worker process starts
    RouteTable.from_config(config.routes)
    init(config).dispose()
    if args.config:  # worker processes load the same file (gateway.serve.app_factory)
        os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
    serve(
        config,
        host=args.host or config.server.host,
        port=args.port or config.server.port,
        workers=args.workers or config.server.workers,
    )


@with_storage
def cmd_demo(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    from gateway.demo.serve import run_demo

    host, port = args.host or config.server.host, args.port or config.server.port
    run_demo(config, storage, host, port, args.upstream_port)


def cmd_key(config: Config, args: argparse.Namespace) -> None:
    directory = config.keys_dir
    if args.action == "rotate":
        key = create_key(directory, config.keys.algorithm, config.keys.activation_delay)
        print(f"published key {key.kid} ({key.alg}); signs from {when(key.activates_at)}")
    elif args.action == "retire":
        ring = KeyRing(directory)
        if args.kid in ring.by_kid and len(ring.keys) == 1:
            raise ConfigError("cannot retire the only key: run 'gateway key rotate' first")
        retire_key(directory, args.kid)
        print(f"retired key {args.kid}")
    else:
        ring = KeyRing(directory)
        active = ring.active_key.kid if ring.keys else None
        now = time.time()
        rows = [
            {
                "kid": k.kid,
                "alg": k.alg,
                "status": "active"
                if k.kid == active
                else ("pending" if k.activates_at > now else "published"),
                "created_at": when(k.created_at),
                "activates_at": when(k.activates_at),
            }
            for k in ring.keys
        ]
        lines = [
            f"{r['kid']}  {r['alg']:<7} {r['status']:<9} activates {r['activates_at']}"
            for r in rows
        ]
        out(rows, args.json, "\n".join(lines) or "no keys: run 'gateway init'")


@with_storage
def cmd_token(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    revoker = revoker_for(config, storage)
    if args.jti:
        # the token's exp is unknown here: keep the entry for the longest lifetime it could have
        exp = time.time() + config.tokens.access_token_ttl
        revoker.revoke(lambda s: revoker.jti(s, args.jti, exp))
        print(f"revoked token {args.jti}")
        return
    with storage.session() as session:
        user = accounts.require_user(session, args.user)
    entries = revoker.revoke(lambda s: revoker.subject(s, user.id))
    print(
        f"revoked every token of {user.email} issued until now ({len(entries) - 1} grant(s) ended)"
    )


def cmd_db(config: Config, args: argparse.Namespace) -> None:
    storage = Storage(config.database_url)
    try:
        current = current_revision(storage.engine)
        head = head_revision(storage.engine)
    finally:
        storage.dispose()
    state = "up to date" if current == head else f"behind head {head}: run 'gateway init'"
    print(f"{current or 'empty'} ({state})")


def cmd_edge_config(config: Config, args: argparse.Namespace) -> None:
    print(edge_config(args.edge, config, args.upstream, args.listen, args.gateway), end="")
