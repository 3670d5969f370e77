"""The streaming, scope-enforcing reverse proxy (see ``app.py`` for the request pipeline).

The package imports none of its modules itself: ``gateway.proxy.http1`` (the upstream client)
is imported without the proxy around it, and a module of the gateway that needs one part of
the proxy (``paths``, ``routes``) loads only that part.
"""
