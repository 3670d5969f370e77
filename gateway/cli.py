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
from gateway.errors import ConfigError, StorageUnavailable
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.revoker import Revoker
from gateway.keys import KeyRing, create_key, ensure_key, retire_key, session_secret
from gateway.storage import Storage, current_revision, head_revision, upgrade_schema


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
    uc.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    uc.add_argument("--json", action="store_true")

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
    cc.add_argument("--json", action="store_true")
    cl = client.add_parser("list", help="list clients")
    cl.add_argument("--json", action="store_true")
    cd = client.add_parser("delete", help="delete a client and revoke its grants")
    cd.add_argument("client_id", metavar="ID")

    key = sub.add_parser("key", help="manage signing keys").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    kl = key.add_parser("list", help="list published keys")
    kl.add_argument("--json", action="store_true")
    key.add_parser("rotate", help="publish a new key; it signs after keys.activation_delay")
    kr = key.add_parser("retire", help="unpublish a key: tokens it signed stop validating")
    kr.add_argument("kid", metavar="KID")

    token = sub.add_parser("token", help="manage tokens").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    tr = token.add_parser("revoke", help="revoke one access token, or every token of a user")
    group = tr.add_mutually_exclusive_group(required=True)
    group.add_argument("--jti", help="the access token's jti claim")
    group.add_argument("--user", metavar="EMAIL", help="every token of this user issued until now")

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


def cmd_init(config: Config, args: argparse.Namespace) -> None:
    storage = init(config)
    print(
        f"database ready at revision {current_revision(storage.engine)}; keys in {config.keys_dir}"
    )


def cmd_serve(config: Config, args: argparse.Namespace) -> None:
    from gateway.serve import serve

    init(config).dispose()
    serve(
        config,
        host=args.host or config.server.host,
        port=args.port or config.server.port,
        workers=args.workers or config.server.workers,
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ConfigError("the passwords do not match")
    return first


def cmd_user(config: Config, args: argparse.Namespace) -> None:
    password = _read_password(args.password_stdin)
    storage = init(config)
    with storage.session() as session:
        user = accounts.create_user(session, args.email, password)
    _out({"id": user.id, "email": user.email}, args.json, f"created user {user.email} ({user.id})")


def cmd_client(config: Config, args: argparse.Namespace) -> None:
    storage = init(config)
    if args.action == "create":
        method = args.auth_method or ("none" if args.public else "client_secret_basic")
        if args.public and method != "none":
            raise ConfigError("--public clients use --auth-method none")
        grants = args.grant_types or ["authorization_code", "refresh_token"]
        with storage.session() as session:
            new = accounts.create_client(
                session, args.name, args.redirect_uris, grants, args.scope, method, args.introspect
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
                }
                for c in accounts.list_clients(session)
            ]
        lines = [
            f"{r['client_id']}  {r['name']}  [{' '.join(r['grant_types'])}]  scope={r['scope']!r}"
            for r in rows
        ]
        _out(rows, args.json, "\n".join(lines) or "no clients")
    else:
        revoker = _revoker(config, storage)

        def delete(session: Any) -> list[Any]:
            accounts.delete_client(session, args.client_id)
            return revoker.client(session, args.client_id)

        revoker.revoke(delete)
        print(f"deleted client {args.client_id} and revoked its grants")


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


def cmd_token(config: Config, args: argparse.Namespace) -> None:
    storage = init(config)
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
    current = current_revision(storage.engine)
    head = head_revision(storage.engine)
    state = "up to date" if current == head else f"behind head {head}: run 'gateway init'"
    print(f"{current or 'empty'} ({state})")


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], None]] = {
    "init": cmd_init,
    "serve": cmd_serve,
    "user": cmd_user,
    "client": cmd_client,
    "key": cmd_key,
    "token": cmd_token,
    "db": cmd_db,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.config:
            os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
        COMMANDS[args.command](config, args)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        print(f"gateway: database unavailable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
