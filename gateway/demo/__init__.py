"""``gateway demo``: the gateway with an upstream, a user and clients to try it with.

::

    serve.py          run_demo: accounts, routes, the echo upstream, serve, the walkthrough
    clients.py        the demo user, its confidential client and its browser (public) client
    routes.py         three routes to the echo (public, demo:read, demo:write) and their scopes
    echo.py           the echo upstream: shows what reached it; server-sent events
    browser.py        the browser client's pages (OpenID Connect, code + PKCE) on the echo
    relying_party.py  that client's back channel and its ID token checks

Nothing else in the gateway imports it; the CLI's ``demo`` command calls ``run_demo``, and
tests and benchmarks start the echo upstream (``echo.echo_upstream_thread``).
"""
