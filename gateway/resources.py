"""The protected resources the gateway fronts: one per resource identifier its routes name.

A route's identifier is its ``audience``, else ``tokens.audience`` (else the issuer); routes
that share one are one protected resource (RFC 8707 §2, RFC 9728 §1.2). The registry answers
three questions: which identifiers a client may ask a token for (the issuer's ``resource``
parameter), where each resource's metadata lives (RFC 9728 §3.1, the path-inserted well-known
URL), and what that metadata says. Public routes take no tokens and make no resource.

DPoP (RFC 9728 §2, RFC 9449): every resource lists the proof algorithms it
takes; ``dpop_bound_access_tokens_required`` is true when every route of the resource says
``dpop = "required"`` (RFC 9728 §2: the resource "always requires" them). A resource mixing
``required`` and ``allowed`` routes says false: some of it takes bearer tokens, and its
``required`` routes still refuse them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.config import PROOF_ALGORITHMS, Config, RouteConfig
from gateway.hosts import parse_host

#: RFC 9728 §3: the well-known URI suffix, inserted between an identifier's host and its path
METADATA_PREFIX = "/.well-known/oauth-protected-resource"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def metadata_path(identifier: str) -> str:
    """RFC 9728 §3.1: the well-known path for ``identifier``, its terminating slash dropped."""
    path = urlsplit(identifier).path
    if path == "/":
        path = ""
    return METADATA_PREFIX + path


@dataclass(frozen=True)
class Resource:
    identifier: str
    #: shown to people: the metadata's ``resource_name`` and the consent page
    name: str | None
    documentation: str | None
    #: every scope its routes name, ``openid`` never (the metadata's ``scopes_supported``)
    scopes: tuple[str, ...]
    #: every route of the resource has ``dpop = "required"``
    dpop_required: bool = False

    @property
    def metadata_path(self) -> str:
        return metadata_path(self.identifier)

    @property
    def metadata_url(self) -> str:
        """Built from the identifier, never from a request's ``Host`` (RFC 9728 §5.1)."""
        parts = urlsplit(self.identifier)
        return f"{parts.scheme}://{parts.netloc}{self.metadata_path}"

    @property
    def authority(self) -> str:
        """The identifier's host, normalised as a request's ``Host`` is (``gateway.hosts``),
        with its port unless that is the scheme's default: what ``Host`` says."""
        parts = urlsplit(self.identifier)
        host = parse_host(parts.netloc)
        if parts.port is None or parts.port == _DEFAULT_PORTS.get(parts.scheme):
            return host.name
        return host.authority

    @property
    def label(self) -> str:
        """What the consent page shows: the name, else the identifier's host and path."""
        if self.name:
            return self.name
        parts = urlsplit(self.identifier)
        return (parts.netloc + parts.path).rstrip("/")

    def metadata(self, issuer: str) -> dict[str, object]:
        """The RFC 9728 §2 document (the gateway signs no responses: no signing algorithms)."""
        document: dict[str, object] = {
            "resource": self.identifier,
            "authorization_servers": [issuer],
            "scopes_supported": list(self.scopes),
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": list(PROOF_ALGORITHMS),
        }
        if self.dpop_required:
            document["dpop_bound_access_tokens_required"] = True
        if self.name is not None:
            document["resource_name"] = self.name
        if self.documentation is not None:
            document["resource_documentation"] = self.documentation
        return document


class Resources:
    """The registry, built once from the routes (the config is validated at load).
    ``audience``: the identifier of the routes that name none (``tokens.audience``, else the
    issuer)."""

    def __init__(self, resources: tuple[Resource, ...], audience: str | None = None) -> None:
        self._audience = audience
        self._by_identifier = {r.identifier: r for r in resources}
        self._by_path: dict[str, list[Resource]] = {}
        for resource in resources:
            self._by_path.setdefault(resource.metadata_path, []).append(resource)

    @classmethod
    def from_config(cls, config: Config) -> Resources:
        order: list[str] = []
        names: dict[str, str] = {}
        docs: dict[str, str] = {}
        scopes: dict[str, set[str]] = {}
        allowed: set[str] = set()  # resources with a route that takes bearer tokens
        for route in config.routes:
            if route.public:
                continue
            identifier = config.resource_identifier(route)
            if identifier not in scopes:
                order.append(identifier)
                scopes[identifier] = set()
            if route.dpop != "required":
                allowed.add(identifier)
            for scope_set in route.scopes:
                scopes[identifier].update(scope_set)
            for _, tool_sets in route.mcp_tool_scopes:
                for scope_set in tool_sets:
                    scopes[identifier].update(scope_set)
            if route.resource_name is not None:
                names.setdefault(identifier, route.resource_name)
            if route.resource_documentation is not None:
                docs.setdefault(identifier, route.resource_documentation)
        return cls(
            tuple(
                Resource(
                    identifier=identifier,
                    name=names.get(identifier),
                    documentation=docs.get(identifier),
                    scopes=tuple(sorted(scopes[identifier] - {"openid"})),
                    dpop_required=identifier not in allowed,
                )
                for identifier in order
            ),
            config.audience,
        )

    def __iter__(self) -> Iterator[Resource]:
        return iter(self._by_identifier.values())

    def __len__(self) -> int:
        return len(self._by_identifier)

    @property
    def scopes(self) -> frozenset[str]:
        """Every scope the resources name (their tools' included), ``openid`` never."""
        return frozenset(scope for resource in self for scope in resource.scopes)

    def get(self, identifier: str) -> Resource | None:
        """The resource named exactly ``identifier`` (RFC 8707: compared as strings)."""
        return self._by_identifier.get(identifier)

    def of(self, route: RouteConfig) -> Resource | None:
        """The resource ``route`` belongs to; None for a public route (it makes none)."""
        if route.public:
            return None
        identifier = route.audience or self._audience
        return None if identifier is None else self.get(identifier)

    def at(self, path: str, host: str | None) -> Resource | None:
        """The resource whose metadata lives at ``path``; when several share the path, the
        one whose identifier's host is the request's ``host`` (none matching: None). A
        ``Host`` with a port picks the identifier with that port before one without it."""
        candidates = self._by_path.get(path)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        if host is None:
            return None
        try:
            wanted = parse_host(host)
        except ValueError:
            return None
        for resource in candidates:
            if resource.authority == wanted.authority:
                return resource
        for resource in candidates:
            if resource.authority == wanted.name:
                return resource
        return None


def registrable_scopes(config: Config) -> frozenset[str]:
    """The scopes a client that registered itself may ask for: ``[registration]
    allowed_scopes``, else every scope the resources name (their tools' included)."""
    if config.registration.allowed_scopes is not None:
        return frozenset(config.registration.allowed_scopes)
    return Resources.from_config(config).scopes
