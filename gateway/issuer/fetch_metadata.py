"""Fetch Metadata (https://www.w3.org/TR/fetch-metadata/): what the browser says about where a
request comes from, read by the authorization pages.

A page served through a route on the issuer's host shares its origin with the login and consent
pages: its script can ``fetch()`` the consent page, read the CSRF token in it and post Allow,
the browser adding the session cookie (issue 15 §3). A CSRF token cannot tell that POST from a
person's; the browser's Fetch Metadata can. A person submitting a form navigates a document
(``Sec-Fetch-Mode: navigate``, ``Sec-Fetch-Dest: document``, §2.2, §2.3), and our forms post to
our own origin (``Sec-Fetch-Site: same-origin``, §2.4); a ``fetch()`` has the mode ``cors`` or
``same-origin`` and the destination ``empty``, a frame the destination ``iframe``.

The same headers tell a top-level navigation (a link followed, a URL typed, a client's redirect
to the authorization endpoint, with any ``Sec-Fetch-Site``) from a request made inside another
page, for the session cookie's rule (``gateway.issuer.html.withhold_session_cookie``).

A browser that sends Fetch Metadata sends all of it (every current one does). A request with
no ``Sec-Fetch-*`` header at all (an older browser, or no browser) counts as a navigation: the
CSRF token alone decides its forms, as before. One with any of them must have each header this
module asks for exactly once, with exactly the value asked for (the values are tokens,
compared as sent).
"""

from __future__ import annotations

from starlette.datastructures import Headers

#: a top-level navigation of a document (W3C Fetch Metadata §2.2, §2.3)
NAVIGATION = (("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document"))
#: the same, started by a page of the same origin (§2.4): a form of ours submitted
SAME_ORIGIN_NAVIGATION = (("sec-fetch-site", "same-origin"), *NAVIGATION)


def sends_fetch_metadata(headers: Headers) -> bool:
    return any(name.startswith("sec-fetch-") for name in headers.keys())


def is_navigation(headers: Headers, *, same_origin: bool = False) -> bool:
    """Whether the request is a top-level navigation (started by a page of our own origin, if
    ``same_origin``), as far as the browser says: one that says nothing counts as one.

    ``same_origin=True`` is the rule every form POST of the pages passes (login, consent, "Not
    you?", the logout confirmation) before its CSRF token is even read."""
    if not sends_fetch_metadata(headers):
        return True
    wanted = SAME_ORIGIN_NAVIGATION if same_origin else NAVIGATION
    return all(headers.getlist(name) == [value] for name, value in wanted)
