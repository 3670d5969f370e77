"""The ``gateway`` command line. Usage and input errors exit 2 with one line on stderr; an
unreachable database exits 1."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gateway.cli import accounts, operations, registration
from gateway.cli.parser import parser
from gateway.cli.setup import Command
from gateway.config import load_config
from gateway.errors import ConfigError, InvalidInput, StorageUnavailable

COMMANDS: dict[str, Command] = {
    "init": operations.cmd_init,
    "serve": operations.cmd_serve,
    "user": accounts.cmd_user,
    "client": accounts.cmd_client,
    "consent": accounts.cmd_consent,
    "registration": registration.cmd_registration,
    "key": operations.cmd_key,
    "token": operations.cmd_token,
    "db": operations.cmd_db,
    "demo": operations.cmd_demo,
    "edge-config": operations.cmd_edge_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
