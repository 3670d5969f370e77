"""The ``gateway`` command line. Usage and config errors exit 2 with one line on stderr."""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from gateway import accounts
from gateway.config import GRANT_TYPES, Config, load_config
from gateway.edge import DEFAULT_LISTEN, DEFAULT_UPSTREAM, EDGES, edge_config
from gateway.errors import ConfigError, InvalidInput, StorageUnavailable
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.revoker import Revoker
from gateway.keys import KeyRing, create_key, ensure_key, retire_key, session_secret
from gateway.proxy.routes import RouteTable
from gateway.storage import Storage, current_revision, head_revision, upgrade_schema
from gateway.throttle import LoginThrottle


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gateway", description="OAuth 2.0 gateway: issuer, validator and proxy.")
    p.add_argument("--config", metavar="PATH", help="TOML config file (default: $GATEWAY_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("init", help="create or upgrade the schema; create a first signing key")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    user = sub.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    uc = user.add_parser("create", help="create a user")
    uc.add_argument("--email", required=True)
    uc.add_argument("--name", help="the user's full name (the OpenID Connect 'name' claim)")
    uc.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    uc.add_argument("--json", action="store_true")
    devices = user.add_parser(
        "devices", help="a user's known-device cookies (they skip the login throttle's delay)"
    ).add_subparsers(dest="devices_action", metavar="{forget}", required=True, parser_class=_Parser)
    udf = devices.add_parser(
        "forget",
        help="every known-device cookie of the user issued until now stops skipping the delay",
    )
    udf.add_argument("--user", metavar="EMAIL", required=True)

    client = sub.add_parser("client", help="manage OAuth clients").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    cc = client.add_parser("create", help="register a client")
    cc.add_argument("--name", required=True)
    cc.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
    cc.add_argument(
        "--grant-type",
        action="append",
        dest="grant_types",
        choices=GRANT_TYPES,
        help="repeatable; default: authorization_code and refresh_token",
    )
    cc.add_argument("--scope", default="", help='space-separated, e.g. "orders:read orders:write"')
    cc.add_argument("--public", action="store_true", help="no secret (auth method 'none')")
    cc.add_argument("--auth-method", choices=accounts.AUTH_METHODS)
    cc.add_argument(
        "--introspect", action="store_true", help="a resource server allowed to introspect tokens"
    )
    cc.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        dest="post_logout_redirect_uris",
        help="repeatable; where logout may send the browser back to (exact match)",
    )
    cc.add_argument(
        "--first-party",
        action="store_true",
        help="a client of this deployment itself: its users never see a consent page",
    )
    cc.add_argument("--json", action="store_true")
    cl = client.add_parser("list", help="list clients")
    cl.add_argument("--json", action="store_true")
    cd = client.add_parser("delete", help="delete a client and revoke its grants")
    # ids are base64url and may start with '-': argparse then needs "--" before them
    cd.add_argument(
        "client_id", metavar="ID", help="the client_id (write -- ID if it starts with -)"
    )

    consent = sub.add_parser(
        "consent", help="what users allowed clients (the remembered consent page)"
    ).add_subparsers(dest="action", required=True, parser_class=_Parser)
    col = consent.add_parser("list", help="a user's stored consents")
    col.add_argument("--user", metavar="EMAIL", required=True)
    col.add_argument("--json", action="store_true")
    cor = consent.add_parser(
        "revoke",
        help="forget a user's consent and end the grants (every token) it covered; "
        "exits 0 when there was nothing to revoke",
    )
    cor.add_argument("--user", metavar="EMAIL", required=True)
    cor.add_argument(
        "--client",
        metavar="ID",
        help="only this client_id (write --client=ID if it starts with -); default: every client",
    )

    key = sub.add_parser("key", help="manage signing keys").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    kl = key.add_parser("list", help="list published keys")
    kl.add_argument("--json", action="store_true")
    key.add_parser("rotate", help="publish a new key; it signs after keys.activation_delay")
    kr = key.add_parser("retire", help="unpublish a key: tokens it signed stop validating")
    kr.add_argument("kid", metavar="KID", help="the key's kid (write -- KID if it starts with -)")

    token = sub.add_parser("token", help="manage tokens").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    tr = token.add_parser("revoke", help="revoke one access token, or every token of a user")
    group = tr.add_mutually_exclusive_group(required=True)
    group.add_argument("--jti", help="the access token's jti claim")
    group.add_argument("--user", metavar="EMAIL", help="every token of this user issued until now")

    demo = sub.add_parser("demo", help="serve with a demo upstream, user and client")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument("--upstream-port", type=int, default=9001)

    edge = sub.add_parser(
        "edge-config", help="print a configuration for nginx, Caddy, Traefik or Envoy in front"
    )
    edge.add_argument("edge", choices=EDGES)
    edge.add_argument(
        "--upstream",
        metavar="URL",
        help="where the edge sends allowed requests (default: the "
        f"first route's upstream, else {DEFAULT_UPSTREAM})",
    )
    edge.add_argument(
        "--listen", type=int, default=DEFAULT_LISTEN, metavar="PORT", help="the edge's port"
    )
    edge.add_argument(
        "--gateway",
        metavar="URL",
        help="http://host:port where the edge reaches the gateway "
        "(default: [server] host and port)",
    )

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    db.add_parser("current", help="print the schema revision")
    return p


def _out(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2) if as_json else text)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- commands ---------------------------------------------------------------------------------


def init(config: Config) -> Storage:
    """Create or upgrade the schema and a first key; idempotent. Returns the storage."""
    storage = Storage(config.database_url)
    try:
        upgrade_schema(storage.engine)
    except SQLAlchemyError as exc:
        storage.dispose()
        raise StorageUnavailable(f"cannot prepare the database: {exc.__class__.__name__}") from exc
    created = ensure_key(config.keys_dir, config.keys.algorithm)
    session_secret(config.keys_dir)
    if created:
        print(
            f"created signing key {created.kid} ({created.alg}) in {config.keys_dir}",
            file=sys.stderr,
        )
    return storage


Command = Callable[[Config, argparse.Namespace], None]


def with_storage(command: Callable[[Config, argparse.Namespace, Storage], None]) -> Command:
    """Run ``command`` with the database initialised, and its connections closed after."""

    def run(config: Config, args: argparse.Namespace) -> None:
        storage = init(config)
        try:
            command(config, args, storage)
        finally:
            storage.dispose()

    return run


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


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ConfigError("the passwords do not match")
    return first


@with_storage
def cmd_user(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    if args.action == "devices":
        with storage.session() as session:
            email = accounts.require_user(session, args.user).email
        LoginThrottle(storage, config.throttle, session_secret(config.keys_dir)).forget_devices(
            email
        )
        print(f"forgot {email}'s known devices: the cookies issued until now no longer count")
        return
    password = _read_password(args.password_stdin)
    with storage.session() as session:
        user = accounts.create_user(session, args.email, password, args.name)
    _out(
        {"id": user.id, "email": user.email, "name": user.name},
        args.json,
        f"created user {user.email} ({user.id})",
    )


@with_storage
def cmd_client(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    if args.action == "create":
        method = args.auth_method or ("none" if args.public else "client_secret_basic")
        if args.public and method != "none":
            raise ConfigError("--public clients use --auth-method none")
        grants = args.grant_types or ["authorization_code", "refresh_token"]
        with storage.session() as session:
            new = accounts.create_client(
                session,
                args.name,
                args.redirect_uris,
                grants,
                args.scope,
                method,
                args.introspect,
                post_logout_redirect_uris=args.post_logout_redirect_uris,
                first_party=args.first_party,
            )
        data = {"client_id": new.client.client_id, "client_secret": new.client_secret}
        text = f"client_id:     {new.client.client_id}"
        if new.client_secret:
            text += f"\nclient_secret: {new.client_secret}\n(shown once: store it now)"
        _out(data, args.json, text)
    elif args.action == "list":
        with storage.session() as session:
            rows: list[dict[str, Any]] = [
                {
                    "client_id": c.client_id,
                    "name": c.name,
                    "auth_method": c.token_endpoint_auth_method,
                    "grant_types": c.grant_types,
                    "redirect_uris": c.redirect_uris,
                    "scope": c.scope,
                    "introspect": c.can_introspect,
                    "post_logout_redirect_uris": c.post_logout_redirect_uris,
                    "first_party": c.first_party,
                }
                for c in accounts.list_clients(session)
            ]
        lines = [
            f"{r['client_id']}  {r['name']}  [{' '.join(r['grant_types'])}]  scope={r['scope']!r}"
            + ("  first-party" if r["first_party"] else "")
            for r in rows
        ]
        _out(rows, args.json, "\n".join(lines) or "no clients")
    else:
        revoker = _revoker(config, storage)

        def delete(session: Any) -> list[Any]:
            accounts.delete_client(session, args.client_id)
            return revoker.client(session, args.client_id)

        revoker.revoke(delete)
        print(f"deleted client {args.client_id}, its users' consents, and revoked its grants")


@with_storage
def cmd_consent(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    if args.action == "list":
        with storage.session() as session:
            rows: list[dict[str, Any]] = [
                {
                    "client_id": c.client_id,
                    "client_name": c.client_name,
                    "scope": c.scopes,
                    "created_at": _when(c.created_at),
                    "updated_at": _when(c.updated_at),
                }
                for c in accounts.list_consents(session, args.user)
            ]
        lines = [
            f"{r['client_id']}  {r['client_name'] or '(deleted client)'}  "
            f"scope={' '.join(r['scope'])!r}  allowed {r['created_at']}, updated {r['updated_at']}"
            for r in rows
        ]
        _out(rows, args.json, "\n".join(lines) or f"no consents for {args.user}")
        return
    revoker = _revoker(config, storage)
    with storage.session() as session:
        user = accounts.require_user(session, args.user)
    done: list[accounts.RevokedConsent] = []

    def revoke(session: Any) -> list[Any]:
        done.append(accounts.revoke_consent(session, revoker, user, args.client))
        return done[0].entries

    revoker.revoke(revoke)
    result = done[0]
    target = f"client {args.client}" if args.client else "every client"
    if result.nothing:
        print(f"nothing to revoke: {user.email} has no consent and no grants for {target}")
    else:
        print(
            f"revoked {user.email}'s consent for {target}: {result.consents} consent(s) "
            f"forgotten, {result.grants} grant(s) ended, {result.codes} unused code(s) voided"
        )


def cmd_key(config: Config, args: argparse.Namespace) -> None:
    directory = config.keys_dir
    if args.action == "rotate":
        key = create_key(directory, config.keys.algorithm, config.keys.activation_delay)
        print(f"published key {key.kid} ({key.alg}); signs from {_when(key.activates_at)}")
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
                "created_at": _when(k.created_at),
                "activates_at": _when(k.activates_at),
            }
            for k in ring.keys
        ]
        lines = [
            f"{r['kid']}  {r['alg']:<7} {r['status']:<9} activates {r['activates_at']}"
            for r in rows
        ]
        _out(rows, args.json, "\n".join(lines) or "no keys: run 'gateway init'")


def _revoker(config: Config, storage: Storage) -> Revoker:
    return Revoker(storage, RevocationCache(), config.tokens.access_token_ttl, config.tokens.leeway)


@with_storage
def cmd_token(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    revoker = _revoker(config, storage)
    if args.jti:
        # the token's exp is unknown here: keep the entry for the longest lifetime it could have
        exp = time.time() + config.tokens.access_token_ttl
        revoker.revoke(lambda s: revoker.jti(s, args.jti, exp))
        print(f"revoked token {args.jti}")
        return
    with storage.session() as session:
        user = accounts.find_user(session, args.user)
    if user is None:
        raise ConfigError(f"no user with email {args.user}")
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


COMMANDS: dict[str, Command] = {
    "init": cmd_init,
    "serve": cmd_serve,
    "user": cmd_user,
    "client": cmd_client,
    "consent": cmd_consent,
    "key": cmd_key,
    "token": cmd_token,
    "db": cmd_db,
    "demo": cmd_demo,
    "edge-config": cmd_edge_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        COMMANDS[args.command](config, args)
    except (ConfigError, InvalidInput) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        print(f"gateway: database unavailable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
