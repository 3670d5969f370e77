"""The authorization request's ``prompt`` and ``max_age`` (OpenID Connect Core 1.0 §3.1.2.1).

``prompt`` is "a space delimited, case sensitive list of ASCII string values": ``none``,
``login`` and ``consent`` are served; anything else, ``select_account`` included (there is one
account per browser session, nothing to select), is ``invalid_request``, and so is ``none``
with any other value ("If this parameter contains none with any other value, an error is
returned"). ``max_age`` is a non-negative number of seconds since the last login. Either one
sent empty counts as not sent (RFC 6749 §3.1).

``refuse_unsupported`` answers the request parameters of features not served instead of
ignoring them (a client that sent a request object believes its contents apply): ``request``,
``request_uri`` (a pushed request's never gets here, RFC 9126: the pushed request is read in
its place) and ``registration`` get their §3.1.2.6 errors, and a ``response_mode`` other than
``query`` (the one discovery lists) is ``invalid_request``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oidc.core.errors import (
    RegistrationNotSupportedError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)

PROMPT_VALUES = ("none", "login", "consent")
RESPONSE_MODES = ("query",)
#: OpenID Connect Core §3.1.2.6: the parameters of features not served, and their errors
UNSUPPORTED: dict[str, type[OAuth2Error]] = {
    "request": RequestNotSupportedError,
    "request_uri": RequestURINotSupportedError,
    "registration": RegistrationNotSupportedError,
}
#: more digits than any login is old (3000 years): capped, not refused, as a valid integer
MAX_AGE_DIGITS = 11
MAX_AGE_CAP = 10**MAX_AGE_DIGITS


@dataclass(frozen=True)
class Prompt:
    none: bool = False
    login: bool = False
    consent: bool = False
    max_age: int | None = None

    def login_too_old(self, auth_time: float | None, now: float) -> bool:
        """§3.1.2.1: "If the elapsed time is greater than this value, the OP MUST attempt to
        actively re-authenticate the End-User"."""
        if self.max_age is None:
            return False
        return auth_time is None or now - auth_time > self.max_age


def parse_prompt(prompt: str | None, max_age: str | None, redirect_uri: str | None) -> Prompt:
    """The request's prompt; ``InvalidRequestError`` (sent back to ``redirect_uri``) if bad."""
    values = set((prompt or "").split(" ")) - {""}
    if not values <= set(PROMPT_VALUES):  # not echoed: it may hold anything
        raise InvalidRequestError(
            "'prompt' may only hold none, login and consent.", redirect_uri=redirect_uri
        )
    if "none" in values and len(values) > 1:
        raise InvalidRequestError(
            "'prompt=none' cannot be combined with other values.", redirect_uri=redirect_uri
        )
    age: int | None = None
    if max_age:
        if not (max_age.isascii() and max_age.isdigit()):
            raise InvalidRequestError(
                "'max_age' must be a non-negative integer.", redirect_uri=redirect_uri
            )
        digits = max_age.lstrip("0") or "0"
        age = MAX_AGE_CAP if len(digits) > MAX_AGE_DIGITS else int(digits)
    return Prompt("none" in values, "login" in values, "consent" in values, age)


def refuse_unsupported(params: Mapping[str, str], redirect_uri: str | None) -> None:
    """Raise the error (sent back to ``redirect_uri``) for a parameter of a feature not served."""
    for name, error in UNSUPPORTED.items():
        if params.get(name):
            raise error(f"The '{name}' parameter is not supported.", redirect_uri=redirect_uri)
    mode = params.get("response_mode")
    if mode and mode not in RESPONSE_MODES:  # not echoed: it may hold anything
        raise InvalidRequestError("'response_mode' may only be query.", redirect_uri=redirect_uri)
