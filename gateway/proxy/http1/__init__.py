"""The proxy's own HTTP/1.1 client: asyncio Protocols, with httptools (llhttp) for framing.

It imports nothing from the rest of the gateway: its limits are its own (``PoolLimits``), its
failures are its own (``errors.py``), and its one caller, the gateway's ``Forwarder``
(``../forwarder.py``), translates both from and into the gateway's (a pool builds the
caller's subclass of ``Response``, whose broken-off body raises the caller's error)::

    Pool          pool.py        one per Origin: keep-alive reuse, limits, waiters, retry
      └── Connection  connection.py  an asyncio.Protocol feeding HttpResponseParser
            ├── FlowControl  flow.py      pause/resume reading, drain writes
            └── Response     response.py  status, headers, the body as it arrives
    Origin           origin.py   where a route's requests go (host, port, TLS), built at load
    prepare          request.py  the request head in one piece, its framing decided and checked
    Http1Error, ...  errors.py   what the client raises

Imports run one way: pool -> connection -> response -> flow; the connection knows its pool,
and a response its connection, only as the small Protocols they call back (``Owner``,
``Source``).

RFC 9112 is the reference throughout; each module quotes the sections it implements.
"""
