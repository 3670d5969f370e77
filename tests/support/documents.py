"""A real https server on 127.0.0.1 that serves documents, for the tests of what the issuer
fetches (``gateway.issuer.fetcher``, ``gateway.issuer.client_documents``).

Its certificate comes from a ``trustme`` CA made per test: the fetcher trusts it when given
the CA's PEM file as ``ca_file``, and nothing else does. Each path answers as its ``Answer``
says (status, Content-Type, body, extra headers, or a body that stalls); the server counts
the requests each path got, and records the SNI name each TLS handshake asked for.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

#: the names the server's certificate is valid for
SERVER_NAMES = ("localhost", "127.0.0.1", "docs.test")


@dataclass
class Answer:
    body: bytes = b"{}"
    status: int = 200
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: False: no Content-Length, the body ends when the connection closes
    length: bool = True
    #: stall (until the server closes) before the head, or after this many body bytes
    stall_before_head: bool = False
    stall_after: int | None = None
    #: answer only once this is set
    gate: threading.Event | None = None

    @classmethod
    def json(cls, document: Any, **options: Any) -> Answer:
        return cls(json.dumps(document).encode(), **options)


class DocumentServer:
    def __init__(self, ca: trustme.CA) -> None:
        self.answers: dict[str, Answer] = {}
        self.hits: Counter[str] = Counter()
        self.sni: list[str | None] = []
        #: set when the server closes: what stalls stops stalling
        self.closing = threading.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*SERVER_NAMES).configure_cert(context)
        context.sni_callback = self._record_sni
        self.httpd = _Server(("127.0.0.1", 0), _handler(self), context)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _record_sni(self, sock: Any, name: str | None, context: Any) -> None:
        self.sni.append(name)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        # the handshake happens on the handler's thread, so one stuck client stalls no other
        sock, address = self.socket.accept()
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return tls, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a refused certificate, a timeout) is no error here."""


def _handler(server: DocumentServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def setup(self) -> None:
            self.request.do_handshake()
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            server.hits[path] += 1
            answer = server.answers.get(path, Answer(b"not found", 404, "text/plain"))
            if answer.stall_before_head:
                server.closing.wait()
                return
            if answer.gate is not None:
                answer.gate.wait()  # a test that sets a gate opens it in a finally
            self.send_response(answer.status)
            if answer.content_type is not None:
                self.send_header("Content-Type", answer.content_type)
            if answer.length:
                self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if answer.stall_after is not None:
                self.wfile.write(answer.body[: answer.stall_after])
                self.wfile.flush()
                server.closing.wait()
                return
            self.wfile.write(answer.body)

    return Handler


@contextlib.contextmanager
def serving(ca: trustme.CA) -> Iterator[DocumentServer]:
    server = DocumentServer(ca)
    server.start()
    try:
        yield server
    finally:
        server.close()


def ca_file(ca: trustme.CA, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clients-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path
