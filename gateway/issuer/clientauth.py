"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

"The client MUST NOT use more than one authentication method in each request" (§2.3), and a
method that fails must not be rescued by another: Authlib's ``ClientAuthentication`` tries each
allowed method in turn, so HTTP Basic with a wrong secret for one client followed by a valid
``client_id``/``client_secret`` for another in the body was a token for the second. Here the
methods a request presents are read first:

- ``client_secret_basic``: an ``Authorization`` header (the only scheme a client authenticates
  with here, so any scheme counts as this method, and fails unless it is valid Basic);
- ``client_secret_post``: a ``client_secret`` in the body (§2.3.1), even an empty one;
- ``private_key_jwt``: a ``client_assertion`` or a ``client_assertion_type`` in the body
  (RFC 7523 §2.2): both are needed, the type being
  ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer``, else 400 ``invalid_request``; the
  client is the one the assertion names (``gateway.issuer.client_assertions`` checks it);
- ``none``: a ``client_id`` in the body and none of the above (a public client, §2.1).

Two at once is 400 ``invalid_request``; so is a body ``client_id`` naming another client than
the Basic credentials do. Only the method presented is tried: when it fails (no such client, a
wrong secret, a method the client is not registered for or the endpoint does not take) the
answer is 401 ``invalid_client`` with one fixed description, so the answers never tell an
unknown client from a wrong secret.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from gateway.issuer.client_assertions import (
    ASSERTION_TYPE,
    ClientAssertions,
    unverified_subject,
)
from gateway.models import Client

BASIC = "client_secret_basic"
POST = "client_secret_post"
NONE = "none"
PRIVATE_KEY_JWT = "private_key_jwt"
#: what the token and revocation endpoints take; introspection takes a confidential client's
#: what a client may be registered with (``gateway client create --auth-method``)
CLIENT_AUTH_METHODS = [BASIC, POST, PRIVATE_KEY_JWT, NONE]
CONFIDENTIAL_AUTH_METHODS = [BASIC, POST, PRIVATE_KEY_JWT]
FAILED = "Client authentication failed."


def presented_method(request: Any) -> str:
    """The one method ``request`` authenticates with; ``InvalidRequestError`` for two, or for
    an incomplete or unknown kind of client assertion."""
    form = request.form
    presented = [
        method
        for method, present in (
            (BASIC, request.headers.get("Authorization") is not None),
            (POST, "client_secret" in form),
            (PRIVATE_KEY_JWT, "client_assertion" in form or "client_assertion_type" in form),
        )
        if present
    ]
    if len(presented) > 1:
        raise InvalidRequestError("The client authenticates with more than one method.")
    if presented == [PRIVATE_KEY_JWT]:
        if "client_assertion" not in form or "client_assertion_type" not in form:
            raise InvalidRequestError(
                "A client assertion needs both client_assertion and client_assertion_type."
            )
        if form["client_assertion_type"] != ASSERTION_TYPE:
            raise InvalidRequestError(f"client_assertion_type must be {ASSERTION_TYPE}.")
    return presented[0] if presented else NONE


def authenticate(
    query_client: Any,
    request: Any,
    methods: list[str],
    endpoint: str,
    assertions: ClientAssertions | None = None,
) -> Client:
    """The client ``request`` authenticates as, by the one method it presents, if ``methods``
    allow it; raise ``InvalidClientError`` (401) or ``InvalidRequestError`` (400).
    ``assertions``: the checker of ``private_key_jwt`` (None: the method fails)."""
    method = presented_method(request)
    client = None
    if method == PRIVATE_KEY_JWT and method in methods and assertions is not None:
        client = _asserted_client(query_client, request, assertions, endpoint)
    elif method in methods and method != PRIVATE_KEY_JWT:
        client = _client(query_client, request, method)
    if client is None or not client.check_endpoint_auth_method(method, endpoint):
        raise InvalidClientError(status_code=401, description=FAILED)
    request.auth_method = method
    return client


def _asserted_client(
    query_client: Any, request: Any, assertions: ClientAssertions, endpoint: str
) -> Client | None:
    """The client a valid assertion (RFC 7523 §3) authenticates: the one its ``iss`` and
    ``sub`` name, which a body ``client_id``, if present, names too."""
    assertion = request.form["client_assertion"]
    client_id = unverified_subject(assertion)
    form_id = request.form.get("client_id")
    if client_id is None or (form_id is not None and form_id != client_id):
        return None
    client: Client | None = query_client(client_id)
    if client is None or client.token_endpoint_auth_method != PRIVATE_KEY_JWT:
        return None
    return client if assertions.accepts(client, assertion, endpoint) else None


def _client(query_client: Any, request: Any, method: str) -> Client | None:
    form_id = request.form.get("client_id")
    if method == BASIC:
        try:
            client_id, secret = extract_basic_authorization(request.headers)
        except (UnicodeDecodeError, ValueError):  # not UTF-8; "Basic " and only spaces
            return None
        if client_id and form_id is not None and form_id != client_id:
            raise InvalidRequestError("The client is identified twice, differently.")
    elif method == POST:
        client_id, secret = form_id, request.form["client_secret"]
    else:
        client_id, secret = form_id, None
    if not client_id:
        return None
    client: Client | None = query_client(client_id)
    if client is None or method == NONE:
        return client  # a public client: its registered method must be "none" (checked after)
    if not secret or not client.check_client_secret(secret):
        return None
    return client
