"""The ``gateway registration`` commands: the initial access tokens a client must present to
register itself when ``[registration] dynamic = "token"`` (``gateway.registration_tokens``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from gateway import registration_tokens
from gateway.cli.setup import out, when, with_storage
from gateway.config import Config
from gateway.storage import Storage

#: why a token made under another ``[registration] dynamic`` is not asked for (yet)
UNUSED = {
    "off": "no client can register until it is",
    "open": "clients register without a token",
}


@with_storage
def cmd_registration(config: Config, args: argparse.Namespace, storage: Storage) -> None:
    if args.token_action == "create":
        with storage.session() as session:
            new = registration_tokens.create_token(session, args.ttl, args.uses)
        row = new.row
        data = {
            "id": row.id,
            "token": new.token,
            "expires_at": when(row.expires_at),
            "uses": row.uses_allowed,
        }
        text = (
            f"token: {new.token}\n(shown once: store it now)\n"
            f"id:    {row.id}, for {row.uses_allowed} registration(s) until {when(row.expires_at)}"
        )
        out(data, args.json, text)
        mode = config.registration.dynamic
        if mode != "token":
            print(
                f'note: [registration] dynamic is "{mode}", not "token": {UNUSED[mode]}',
                file=sys.stderr,
            )
    elif args.token_action == "list":
        now = time.time()
        with storage.session() as session:
            rows: list[dict[str, Any]] = [
                {
                    "id": t.id,
                    "status": registration_tokens.status(t, now),
                    "created_at": when(t.created_at),
                    "expires_at": when(t.expires_at),
                    "uses": t.uses,
                    "uses_allowed": t.uses_allowed,
                }
                for t in registration_tokens.list_tokens(session)
            ]
        lines = [
            f"{r['id']}  {r['status']:<7}  used {r['uses']}/{r['uses_allowed']}  "
            f"created {r['created_at']}, expires {r['expires_at']}"
            for r in rows
        ]
        out(rows, args.json, "\n".join(lines) or "no registration tokens")
    else:
        with storage.session() as session:
            revoked = registration_tokens.revoke_token(session, args.id)
        if revoked:
            print(f"revoked registration token {args.id}")
        else:
            print(f"registration token {args.id} was revoked already")
