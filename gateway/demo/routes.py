"""``gateway demo``'s routes to the echo upstream, and the scopes they ask for.

Three routes show the proxy's three answers: ``/demo/public`` passes without a token, reading
under ``/demo`` needs ``demo:read`` and writing needs ``demo:write`` (a token with only the
first is refused 403 ``insufficient_scope`` on a write). The consent page says what the scopes
mean (``SCOPE_DESCRIPTIONS``, unless ``[scopes.descriptions]`` says otherwise).
"""

from __future__ import annotations

from gateway.config import RouteConfig

READ_SCOPE = "demo:read"
WRITE_SCOPE = "demo:write"
SCOPE_DESCRIPTIONS = {
    READ_SCOPE: "See the demo's orders",
    WRITE_SCOPE: "Place and change the demo's orders",
}


def demo_routes(upstream_url: str) -> tuple[RouteConfig, ...]:
    """A public route, a read route (``demo:read``) and a write route (``demo:write``)."""
    return (
        RouteConfig(path="/demo/public", upstream=upstream_url, name="demo-public", public=True),
        RouteConfig(
            path="/demo",
            upstream=upstream_url,
            name="demo-read",
            methods=("GET", "HEAD"),
            scopes=((READ_SCOPE,),),
        ),
        RouteConfig(
            path="/demo",
            upstream=upstream_url,
            name="demo-write",
            methods=("DELETE", "PATCH", "POST", "PUT"),
            scopes=((WRITE_SCOPE,),),
        ),
    )
