"""Run the ``Proxy`` under uvicorn in a process of its own, so its memory can be measured.

``python -m tests.support.gateway_process CONFIG``: prints the port it listens on (127.0.0.1),
then serves until its standard input is closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import uvicorn

from gateway.config import load_config
from gateway.introspect.revocation import RevocationCache
from gateway.introspect.validator import BearerValidator
from gateway.keys import KeyRing
from gateway.proxy.app import Proxy


async def serve(config_path: str) -> None:
    config = load_config(config_path)
    keyring = KeyRing(config.keys_dir)
    validator = BearerValidator(keyring, RevocationCache(), config.issuer, config.tokens.leeway)
    proxy = Proxy(config, validator)
    await proxy.startup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server_config = uvicorn.Config(
        proxy, lifespan="off", proxy_headers=False, log_config=None, access_log=False
    )
    server = uvicorn.Server(server_config)
    server_config.load()
    server.lifespan = server_config.lifespan_class(server_config)
    await server.startup(sockets=[sock])
    print(sock.getsockname()[1], flush=True)
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    await stdin.read()
    await server.shutdown(sockets=[sock])
    await proxy.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(sys.argv[1]))
