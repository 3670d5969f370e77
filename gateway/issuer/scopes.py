"""What a scope lets the client do: what the consent page says of it, and which scopes release
the user's e-mail address.

``[scopes.descriptions]`` in the config first, then the built-in texts for the scopes OpenID
Connect defines (Core §5.4); any other scope is shown by its name alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BUILT_IN = {
    "openid": "Confirm who you are",
    # /oauth/me, the resource ``profile`` opens, answers the e-mail address too
    "profile": "See your name and e-mail address",
    "email": "See your email address",
}

#: RFC 9068 §6 (privacy): an access token, which its client can read, names the user's e-mail
#: address (the ``email`` claim, the ``X-Forwarded-Email`` header, introspection's ``username``)
#: only for a grant that includes one of these
EMAIL_SCOPES = frozenset({"email", "profile"})


def releases_email(scopes: Iterable[str]) -> bool:
    return not EMAIL_SCOPES.isdisjoint(scopes)


@dataclass(frozen=True)
class ScopeLine:
    """One line of the consent page."""

    name: str
    #: None when nothing describes it: the page shows the name alone
    description: str | None
    #: allowed before (remembered consent): shown as such, not as new
    granted: bool = False


def describe(scope: str, configured: Mapping[str, str]) -> str | None:
    return configured.get(scope) or BUILT_IN.get(scope)


def scope_lines(
    scopes: Iterable[str], configured: Mapping[str, str], granted: Iterable[str] = ()
) -> list[ScopeLine]:
    """The lines for ``scopes``, in order: the new ones first, then those allowed before."""
    already = set(granted)
    lines = [ScopeLine(s, describe(s, configured), s in already) for s in dict.fromkeys(scopes)]
    return [line for line in lines if not line.granted] + [line for line in lines if line.granted]
