"""RFC 8707 resource indicators at the issuer: which resources a token may be for.

A client names the protected resources it wants a token for with ``resource`` (repeatable) at
the authorization endpoint and at the token endpoint, for every grant. The rule, in one place:

- Each value must be "an absolute URI ... MUST NOT include a fragment component" (§2) and the
  identifier of a resource the gateway serves (``gateway.resources.Resources``: compared as
  strings), and one the client may ask for (``Client.resources``, None: any). Else
  ``invalid_target``: "The requested resource is invalid, missing, unknown, or malformed."
- A new grant (the authorization request, ``password``, ``client_credentials``) is for the
  resources the request names. None named: a client limited to resources gets those it may ask
  for (a limit is never escaped by naming nothing); any other gets the default audience
  (``tokens.audience``, else the issuer), stored as None and read when each token is issued.
- A token from an existing grant (``authorization_code``, ``refresh_token``) may only be for
  resources of that grant (§2.2: a subset is downscoping); none named, for all of them. The
  default audience counts as the one resource of a grant that named none.

A token's ``aud`` is then its resources: one string for one, a list for several (RFC 7519 §4.1.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from authlib.oauth2.rfc6749.errors import OAuth2Error

from gateway.issuer.oauth_request import OAuthRequest
from gateway.models import Client
from gateway.resources import Resource, Resources

#: RFC 3986 §4.3: absolute-URI = scheme ":" hier-part [ "?" query ]
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: ``invalid_target``, status 400. Its descriptions never quote the request."""

    error = "invalid_target"
    status_code = 400


def _checked(values: Sequence[str]) -> None:
    for value in values:
        if not _ABSOLUTE_URI.fullmatch(value) or "#" in value:
            raise InvalidTargetError("A 'resource' must be an absolute URI without a fragment.")


class ResourceIndicators:
    """The rule above, for ``resources`` (the registry) and ``default`` (the audience of a
    token for no named resource: ``Config.audience``)."""

    def __init__(self, resources: Resources, default: str) -> None:
        self.resources = resources
        self.default = default

    def _allowed(self, values: Sequence[str], client: Client) -> None:
        _checked(values)
        for value in values:
            if self.resources.get(value) is None:
                raise InvalidTargetError("A requested resource is not one this server knows.")
            if client.resources is not None and value not in client.resources:
                raise InvalidTargetError("The client may not ask for a requested resource.")

    def for_new_grant(
        self, request: OAuthRequest, client: Client, redirect_uri: str | None = None
    ) -> tuple[str, ...] | None:
        """What a new grant is for: the resources ``request`` names, else a limited client's
        (those still served), else None (the default audience). ``redirect_uri``: where an
        authorization request's error goes (RFC 6749 §4.1.2.1)."""
        try:
            values = request.resources
            self._allowed(values, client)
            if values:
                return values
            if client.resources is None:
                return None
            served = tuple(r for r in client.resources if self.resources.get(r) is not None)
            if not served:
                raise InvalidTargetError("None of the client's resources is served any more.")
            return served
        except InvalidTargetError as error:
            error.redirect_uri = redirect_uri
            raise

    def within(self, granted: Iterable[str] | None) -> tuple[str, ...]:
        """The resources a grant (code, refresh-token family, consent) stored as ``granted``
        covers: the default audience for None (none was named)."""
        return (self.default,) if granted is None else tuple(granted)

    def for_token(
        self, request: OAuthRequest, client: Client, granted: Sequence[str] | None
    ) -> tuple[str, ...]:
        """The audience of a token from an existing grant, stored as ``granted``: the resources
        ``request`` names, all within the grant, else the grant's own (those still served).
        ``()``: the default audience, as it is configured now."""
        values = request.resources
        self._allowed(values, client)
        covered = self.within(granted)
        if any(value not in covered for value in values):
            raise InvalidTargetError("A requested resource is not one the grant covers.")
        if values:
            return values
        if granted is None:
            return ()
        served = tuple(r for r in granted if self.resources.get(r) is not None)
        if not served:
            raise InvalidTargetError("None of the granted resources is served any more.")
        return served

    def described(self, identifiers: Sequence[str]) -> list[Resource]:
        """The resources among ``identifiers`` the gateway serves (for the consent page)."""
        found = (self.resources.get(identifier) for identifier in identifiers)
        return [resource for resource in found if resource is not None]


def audience_claim(audience: Sequence[str], default: str) -> str | list[str]:
    """RFC 7519 §4.1.3: one resource as a string, several as a list; none: ``default``."""
    if not audience:
        return default
    return audience[0] if len(audience) == 1 else list(audience)
