"""The proxy's own HTTP/1.1 client: asyncio Protocols, with httptools (llhttp) for framing.

::

    Forwarder (../forwarder.py)  the seam: open() -> UpstreamResponse; errors become 502/504
      └── Pool          pool.py        one per Origin: keep-alive reuse, limits, waiters, retry
            └── Connection  connection.py  an asyncio.Protocol feeding HttpResponseParser
                  ├── FlowControl       flow.py      pause/resume reading, drain writes
                  └── UpstreamResponse  response.py  status, headers, the body as it arrives
    Origin   origin.py   where a route's requests go (host, port, TLS), built at config load
    prepare  request.py  the request head in one piece, its framing decided and checked

RFC 9112 is the reference throughout; each module quotes the sections it implements.
"""
