"""The HTML pages of the issuer (the authorization endpoint's login and consent pages, logout,
error pages): templates, the headers every page has, and the session cookie's rule.

Every page gets a fresh CSP nonce, ``no-store`` and ``frame-ancestors 'none'``; a page with a
form carries its CSRF token and the session's cookie (``render_form``), which
``withhold_session_cookie`` then keeps from a browser that did not send one, but for a
top-level GET navigation (issue 15 §4).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.issuer.fetch_metadata import is_navigation
from gateway.issuer.session import COOKIE, LoginSession, SessionCodec

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def page_headers(nonce: str) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # no form-action: browsers apply it to the redirect back to the client
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; frame-ancestors 'none'; "
            "base-uri 'none'"
        ),
    }


def with_param(uri: str, name: str, value: str) -> str:
    """``uri`` with ``name=value`` added to its query (what was there kept, in order)."""
    parts = urlsplit(uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True), (name, value)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_iss(location: str, issuer: str) -> str:
    """RFC 9207: the authorization response names its issuer."""
    return with_param(location, "iss", issuer)


def render_page(template: str, status: int = 200, **context: Any) -> Response:
    """A page of ours: its CSP nonce, and the headers every page has."""
    nonce = secrets.token_urlsafe(12)
    html = TEMPLATES.get_template(template).render(csp_nonce=nonce, **context)
    return Response(html, status, page_headers(nonce), media_type="text/html")


def withhold_session_cookie(http: HTTPRequest, response: Response) -> Response:
    """``response`` without the session cookie, unless ``http`` sent one or is a GET top-level
    navigation: the rule of every answer of the pages (issue 15 §4).

    A cross-site form POST carries no SameSite=Lax cookie. A cookie set (or cleared) in its
    answer would replace the user's session with an anonymous one: signed out, without the
    confirmation logout promises. A top-level GET navigation, from the client's site too
    (``Sec-Fetch-Site: cross-site``), does carry SameSite=Lax cookies: without one, the browser
    has none, and the login form's new session replaces nothing. Pages without a form (error
    pages) set none in the first place."""
    if COOKIE in http.cookies or (http.method == "GET" and is_navigation(http.headers)):
        return response
    ours = COOKIE.encode() + b"="  # how SessionCodec's Set-Cookie fields begin
    response.raw_headers[:] = [
        (name, value)
        for name, value in response.raw_headers
        if not (name == b"set-cookie" and value.startswith(ours))
    ]
    return response


def render_form(
    codec: SessionCodec, template: str, session: LoginSession, status: int = 200, **context: Any
) -> Response:
    """A page with a form: its CSRF token, and the session's cookie (which
    ``withhold_session_cookie`` then keeps from a browser that did not send one, but for a
    top-level GET navigation)."""
    response = render_page(template, status, csrf_token=codec.csrf_token(session), **context)
    response.headers.append("Set-Cookie", codec.cookie_header(session))
    return response


def error_page(error: OAuth2Error | GatewayError) -> Response:
    """An error page: it has no form, so it needs no session and leaves the cookie alone."""
    if isinstance(error, GatewayError):
        status, description = error.status_code, error.description
    else:
        status, description = 400, error.get_error_description()
    return render_page("error.html", status, error=error.error, description=description)
