"""The client metadata a client registers itself with (RFC 7591 §2), checked, and the client
information sent back (RFC 7591 §3.2.1, RFC 7592 §3).

Accepted: ``redirect_uris``, ``client_name``, ``client_uri``, ``grant_types``,
``response_types``, ``token_endpoint_auth_method``, ``scope``, OpenID Connect Registration's
``application_type``, with ``private_key_jwt`` its ``jwks`` or ``jwks_uri``, RFC 9126's
``require_pushed_authorization_requests`` (a boolean, default false: the client's authorization
requests must then all be pushed) and RFC 9449's ``dpop_bound_access_tokens`` (a boolean: true,
and every token request of the client must carry a DPoP proof). Any other field is ignored (§2:
"The authorization server MUST ignore any client metadata sent by the client that it does not
understand"), and a ``null`` is an omitted field (RFC 7592 §2.2). A value that is wrong is
refused, never replaced: ``invalid_redirect_uri`` for the redirect URIs,
``invalid_client_metadata`` for the rest (§3.2.2). A description names the field, never its
value: the words in an answer are the gateway's own.

The rules beyond each field's type:

- redirect URIs as for ``gateway client create`` (``accounts.redirect_uri_problem``), and by
  ``application_type`` (OpenID Connect Registration 1.0 §2): a ``web`` client's are https and
  not on a loopback host ("they MUST NOT use localhost as the hostname"); a ``native`` client's
  use a private-use scheme or http on a loopback host (RFC 8252 §7.1, §7.3). Omitted, the type
  is ``web``, as OpenID Connect says;
- ``grant_types`` (default ``authorization_code``) and ``response_types`` (default: ``code``
  with ``authorization_code``) agree (§2.1); ``refresh_token`` only with ``authorization_code``
  (the only grant a registered client gets refresh tokens from); ``authorization_code`` needs a
  redirect URI; a public client (``none``) has no ``client_credentials``;
- ``private_key_jwt`` (RFC 7523) needs exactly one of ``jwks`` (public signing keys, as
  ``gateway client create --jwks`` takes them) and ``jwks_uri`` (https, fetched by the
  SSRF-safe rules); "MUST NOT both be present" (§2). With another method they are ignored;
- ``scope``: within ``[registration] allowed_scopes``. It is the client's default when a request
  names none; a request may name any allowed scope (``Client.widen_scopes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError

from gateway.accounts import redirect_uri_problem
from gateway.hosts import is_loopback_host
from gateway.issuer.client_keys import JwksRefused, jwks_uri_problem, read_jwks
from gateway.models import Client

#: the grants a client may register for (``password`` is for the deployment's own clients)
REGISTRABLE_GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
APPLICATION_TYPES = ("web", "native")
#: what a client that gives no ``client_name`` is shown as (RFC 7591 §2: the server "MAY
#: display the client_id or other information"; a random id looks like nothing to a person)
UNNAMED = "Unnamed client"
MAX_REDIRECT_URIS = 20
MAX_URI_LENGTH = 2000
MAX_NAME_LENGTH = 200
#: RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


@dataclass(frozen=True)
class ClientMetadata:
    """What a client registered, every default applied."""

    redirect_uris: tuple[str, ...]
    client_name: str
    client_uri: str | None
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    token_endpoint_auth_method: str
    scope: str
    application_type: str
    #: RFC 9126 §6 ``require_pushed_authorization_requests`` (``Client.require_par``)
    require_par: bool = False
    #: RFC 9449 §5.2 ``dpop_bound_access_tokens`` (``Client.require_dpop``)
    dpop_bound_access_tokens: bool = False
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None

    @property
    def public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def kind(self) -> str:
        """How the client proves itself: ``public``, ``secret`` or ``keys``."""
        return method_kind(self.token_endpoint_auth_method)


def method_kind(method: str) -> str:
    if method == "none":
        return "public"
    return "keys" if method == "private_key_jwt" else "secret"


def parse_metadata(document: Mapping[str, Any], allowed_scopes: frozenset[str]) -> ClientMetadata:
    """The metadata of a registration request's JSON object; raises ``InvalidRedirectURIError``
    or ``InvalidClientMetadataError`` (400) naming the first field found wrong."""
    application_type = _choice(document, "application_type", APPLICATION_TYPES, "web")
    redirect_uris = _redirect_uris(document.get("redirect_uris"), application_type)
    grant_types = _grant_types(document.get("grant_types"))
    response_types = _response_types(document.get("response_types"), grant_types)
    method = _choice(document, "token_endpoint_auth_method", AUTH_METHODS, "client_secret_basic")
    if method == "none" and "client_credentials" in grant_types:
        raise InvalidClientMetadataError(
            "A public client (token_endpoint_auth_method none) cannot use client_credentials."
        )
    if "authorization_code" in grant_types and not redirect_uris:
        raise InvalidRedirectURIError("The authorization_code grant needs a redirect URI.")
    jwks, jwks_uri = _keys(document) if method == "private_key_jwt" else (None, None)
    return ClientMetadata(
        redirect_uris=redirect_uris,
        client_name=_client_name(document.get("client_name")),
        client_uri=_client_uri(document.get("client_uri")),
        grant_types=grant_types,
        response_types=response_types,
        token_endpoint_auth_method=method,
        scope=_scope(document.get("scope"), allowed_scopes),
        application_type=application_type,
        require_par=_boolean(document, "require_pushed_authorization_requests"),
        dpop_bound_access_tokens=_boolean(document, "dpop_bound_access_tokens"),
        jwks=jwks,
        jwks_uri=jwks_uri,
    )


def _boolean(document: Mapping[str, Any], field: str) -> bool:
    value = document.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidClientMetadataError(f"{field} must be a boolean.")
    return value


def _keys(document: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A private_key_jwt client's ``jwks`` or ``jwks_uri``: exactly one."""
    jwks, jwks_uri = document.get("jwks"), document.get("jwks_uri")
    if (jwks is None) == (jwks_uri is None):
        raise InvalidClientMetadataError("private_key_jwt needs exactly one of jwks and jwks_uri.")
    if jwks is not None:
        try:
            read_jwks(jwks, strict=True)
        except JwksRefused as refused:
            raise InvalidClientMetadataError(f"jwks {refused}.") from None
        return jwks, None
    if not isinstance(jwks_uri, str) or jwks_uri_problem(jwks_uri) is not None:
        raise InvalidClientMetadataError(
            f"jwks_uri must be an https URL of at most {MAX_URI_LENGTH} characters."
        )
    return None, jwks_uri


def _choice(document: Mapping[str, Any], field: str, choices: tuple[str, ...], default: str) -> str:
    value = document.get(field)
    if value is None:
        return default
    if value not in choices:
        raise InvalidClientMetadataError(f"{field} must be one of {', '.join(choices)}.")
    return str(value)


def _strings(value: Any, field: str, error: type[OAuth2Error]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise error(f"{field} must be an array of strings.")
    return value


def _redirect_uris(value: Any, application_type: str) -> tuple[str, ...]:
    if value is None:
        return ()
    uris = _strings(value, "redirect_uris", InvalidRedirectURIError)
    if len(uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectURIError(f"At most {MAX_REDIRECT_URIS} redirect URIs.")
    for i, uri in enumerate(uris):
        if len(uri) > MAX_URI_LENGTH:
            problem: str | None = f"is longer than {MAX_URI_LENGTH} characters"
        else:
            problem = redirect_uri_problem(uri) or _application_problem(uri, application_type)
        if problem is not None:
            raise InvalidRedirectURIError(f"redirect_uris[{i}] {problem}.")
    return tuple(dict.fromkeys(uris))


def _application_problem(uri: str, application_type: str) -> str | None:
    """OpenID Connect Registration 1.0 §2, ``application_type``."""
    parts = urlsplit(uri)
    loopback = is_loopback_host(parts.hostname or "")
    if application_type == "web":
        if parts.scheme != "https" or loopback:
            return (
                "of a web client must be https and not on a loopback host (an app on the "
                "user's device registers with application_type native)"
            )
    elif parts.scheme == "https" or (parts.scheme == "http" and not loopback):
        return "of a native client must use a private-use scheme or http on a loopback host"
    return None


def _grant_types(value: Any) -> tuple[str, ...]:
    if value is None:
        return ("authorization_code",)
    grant_types = tuple(dict.fromkeys(_strings(value, "grant_types", InvalidClientMetadataError)))
    if not grant_types:
        raise InvalidClientMetadataError("grant_types must name at least one grant type.")
    if any(grant not in REGISTRABLE_GRANT_TYPES for grant in grant_types):
        raise InvalidClientMetadataError(
            f"grant_types may name {', '.join(REGISTRABLE_GRANT_TYPES)} only."
        )
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        raise InvalidClientMetadataError(
            "grant_types: refresh_token is issued with authorization_code only."
        )
    return grant_types


def _response_types(value: Any, grant_types: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 7591 §2.1: ``code`` goes with ``authorization_code``, and only with it."""
    expected = ("code",) if "authorization_code" in grant_types else ()
    if value is None:
        return expected
    response_types = tuple(
        dict.fromkeys(_strings(value, "response_types", InvalidClientMetadataError))
    )
    if any(response_type != "code" for response_type in response_types):
        raise InvalidClientMetadataError("response_types may name code only.")
    if response_types != expected:
        raise InvalidClientMetadataError(
            "response_types must be [code] with the authorization_code grant, else empty."
        )
    return response_types


def _client_name(value: Any) -> str:
    if value is None:
        return UNNAMED
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidClientMetadataError(
            f"client_name must be 1 to {MAX_NAME_LENGTH} printable characters."
        )
    return name


def _client_uri(value: Any) -> str | None:
    if value is None:
        return None
    problem = "client_uri must be an https URL (http on a loopback host) of at most "
    problem += f"{MAX_URI_LENGTH} characters."
    if not isinstance(value, str) or len(value) > MAX_URI_LENGTH:
        raise InvalidClientMetadataError(problem)
    if any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidClientMetadataError(problem)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        raise InvalidClientMetadataError(problem) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise InvalidClientMetadataError(problem)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise InvalidClientMetadataError(problem)
    return value


def _scope(value: Any, allowed: frozenset[str]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not SCOPE_CHARS.issuperset(value.replace(" ", "")):
        raise InvalidClientMetadataError("scope must be space-separated scope names.")
    scopes = list(dict.fromkeys(value.split()))
    if not allowed.issuperset(scopes):
        raise InvalidClientMetadataError(
            "scope names a scope registered clients may not ask for (see scopes_supported)."
        )
    return " ".join(scopes)


def client_information(client: Client, issuer: str) -> dict[str, Any]:
    """RFC 7591 §3.2.1 and RFC 7592 §3: every registered metadata field, ``client_id`` and
    when it was issued, and the configuration endpoint's URL. The secrets (``client_secret``,
    ``registration_access_token``) are the caller's to add, when it has them."""
    information: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.created_at),
        "client_secret_expires_at": 0,
        "client_name": client.name,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": ["code"] if "authorization_code" in client.grant_types else [],
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "application_type": client.application_type or "web",
        "dpop_bound_access_tokens": client.require_dpop,
        "registration_client_uri": registration_client_uri(issuer, client.client_id),
    }
    if client.scope:
        information["scope"] = client.scope
    if client.client_uri is not None:
        information["client_uri"] = client.client_uri
    if client.require_par:  # omitted: false (RFC 9126 §6)
        information["require_pushed_authorization_requests"] = True
    if client.jwks is not None:
        information["jwks"] = client.jwks
    if client.jwks_uri is not None:
        information["jwks_uri"] = client.jwks_uri
    return information


def registration_client_uri(issuer: str, client_id: str) -> str:
    """RFC 7592 §1: the client configuration endpoint of ``client_id``."""
    return f"{issuer.rstrip('/')}/oauth/register/{client_id}"
