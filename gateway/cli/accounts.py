"""The ``gateway user``, ``client`` and ``consent`` commands: the people and clients the issuer
knows, and what users allowed."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from gateway import accounts
from gateway.cli.setup import out, revoker_for, when, with_storage
from gateway.config import Config
from gateway.errors import ConfigError, InvalidInput
from gateway.keys import session_secret
from gateway.resources import Resources
from gateway.storage import Storage
from gateway.throttle import LoginThrottle


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
    out(
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
        if args.resources is not None:
            _check_resources(config, args.resources)
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
                resources=args.resources,
                require_dpop=args.require_dpop,
                require_par=args.require_par,
                jwks=_read_jwks(args.jwks),
                jwks_uri=args.jwks_uri,
            )
        data = {"client_id": new.client.client_id, "client_secret": new.client_secret}
        text = f"client_id:     {new.client.client_id}"
        if new.client_secret:
            text += f"\nclient_secret: {new.client_secret}\n(shown once: store it now)"
        out(data, args.json, text)
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
                    "origin": c.origin,
                    "resources": c.resources,
                    "require_dpop": c.require_dpop,
                    "require_par": c.require_par,
                }
                for c in accounts.list_clients(session)
            ]
        lines = [
            f"{r['client_id']}  {r['name']}  [{' '.join(r['grant_types'])}]  scope={r['scope']!r}"
            + f"  auth={r['auth_method']}  origin={r['origin']}"
            + ("  first-party" if r["first_party"] else "")
            + ("  dpop" if r["require_dpop"] else "")
            + ("  par" if r["require_par"] else "")
            + (f"  resources={' '.join(r['resources'])!r}" if r["resources"] is not None else "")
            for r in rows
        ]
        out(rows, args.json, "\n".join(lines) or "no clients")
    else:
        revoker = revoker_for(config, storage)

        def delete(session: Any) -> list[Any]:
            accounts.delete_client(session, args.client_id)
            return revoker.client(session, args.client_id)

        revoker.revoke(delete)
        print(f"deleted client {args.client_id}, its users' consents, and revoked its grants")


def _read_jwks(path: str | None) -> dict[str, object] | None:
    """The JSON object of the ``--jwks`` file (its keys are checked by ``create_client``)."""
    if path is None:
        return None
    try:
        document = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise InvalidInput(f"--jwks {path}: cannot be read: {exc.strerror}") from None
    except ValueError:
        raise InvalidInput(f"--jwks {path}: is not a JSON file") from None
    if not isinstance(document, dict):
        raise InvalidInput(f'--jwks {path}: is not a JWK Set (a JSON object with a "keys" array)')
    return document


def _check_resources(config: Config, resources: list[str]) -> None:
    """Each ``--resource`` names a protected resource of the config's routes, exactly."""
    served = Resources.from_config(config)
    for uri in resources:
        if served.get(uri) is None:
            known = ", ".join(r.identifier for r in served)
            raise InvalidInput(
                f"--resource {uri!r} is not a resource of this gateway's routes "
                + (f"(they are: {known})" if known else "(no route takes tokens)")
            )


@with_storage
def cmd_consent(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    if args.action == "list":
        with storage.session() as session:
            rows: list[dict[str, Any]] = [
                {
                    "client_id": c.client_id,
                    "client_name": c.client_name,
                    "scope": c.scopes,
                    "resources": c.resources,
                    "created_at": when(c.created_at),
                    "updated_at": when(c.updated_at),
                }
                for c in accounts.list_consents(session, args.user)
            ]
        lines = [
            f"{r['client_id']}  {r['client_name'] or '(deleted client)'}  "
            f"scope={' '.join(r['scope'])!r}  "
            + (f"resources={' '.join(r['resources'])!r}  " if r["resources"] is not None else "")
            + f"allowed {r['created_at']}, updated {r['updated_at']}"
            for r in rows
        ]
        out(rows, args.json, "\n".join(lines) or f"no consents for {args.user}")
        return
    revoker = revoker_for(config, storage)
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
