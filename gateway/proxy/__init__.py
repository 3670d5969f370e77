"""The streaming, scope-enforcing reverse proxy (see ``app.py`` for the request pipeline)."""

from gateway.proxy.app import Proxy
from gateway.proxy.routes import RouteTable

__all__ = ["Proxy", "RouteTable"]
