"""The authorization endpoint (RFC 6749 §3.1, §4.1): login, consent, and the redirect back.

GET shows the login form, or the consent page once signed in, or neither: inside a valid
browser session (single sign-on, ``Sessions``) a client the user already allowed the requested
scopes (remembered consent, ``gateway.consents``), or a first-party one, gets its code at once.
``prompt`` and ``max_age`` (OpenID Connect Core §3.1.2.1, ``gateway.issuer.prompt``) force the
login form or the consent page, or (``prompt=none``) forbid every page: what would need one is
answered ``login_required`` or ``consent_required`` instead. ``prompt=consent`` shows the
consent page to first-party clients too: the client asked for it.

The forms post back to the same URL (the authorization request stays in the query string), so
every POST re-validates the request from scratch. A request whose client or redirect URI is not
valid gets an error page and never a redirect (RFC 6749 §4.1.2.1); any other error goes back to
the client, with ``state`` and ``iss`` (RFC 9207).

A form POST counts only as a person's navigation from our own page (``is_navigation``, Fetch
Metadata): a script on the issuer's origin could otherwise read a page's CSRF token and post
it (issue 15 §3). And no answer sets or clears the session cookie of a browser that did not
send it, but for the first page of a sign-in (``withhold_session_cookie``, issue 15 §4).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import RedirectResponse, Response

from gateway.consents import granted_scopes, remember
from gateway.errors import GatewayError, NotANavigation, PasswordsBusy
from gateway.introspect.revocation import RevocationEntry
from gateway.issuer.devices import DEVICE_COOKIE
from gateway.issuer.endpoints import oauth_request
from gateway.issuer.fetch_metadata import is_navigation
from gateway.issuer.prompt import Prompt, parse_prompt, refuse_unsupported
from gateway.issuer.scopes import scope_lines
from gateway.issuer.server import Request, Server
from gateway.issuer.session import COOKIE, LoginSession, SessionCodec, Sessions, request_digest
from gateway.issuer.tokens import Principal
from gateway.models import BrowserSession, Grant, User
from gateway.throttle import TooManyAttempts

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


@dataclass(frozen=True)
class Visit:
    """One authorization request, as the pages see it."""

    http: HTTPRequest
    request: Request
    grant: Any
    session: LoginSession
    user: User | None
    prompt: Prompt

    @property
    def needs_login(self) -> bool:
        """No one signed in, or ``prompt=login`` / ``max_age`` ask for a login newer than the
        session's, and this request has not had one yet (``fresh_for``)."""
        if self.user is None:
            return True
        if self.session.fresh_for == request_digest(self.http.url.query):
            return False
        return self.prompt.login or self.prompt.login_too_old(self.session.auth_time, time.time())

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset((self.grant.request.scope or "").split())

    def principal(self) -> Principal:
        if self.user is None:
            raise ValueError("no one signed in")
        return Principal.new(self.user, self.session.auth_time, self.session.sid)


class AuthorizePages:
    def __init__(self, server: Server, codec: SessionCodec, sessions: Sessions) -> None:
        self.server = server
        self.codec = codec
        self.sessions = sessions

    def render(
        self, template: str, session: LoginSession, status: int = 200, **context: Any
    ) -> Response:
        """A page with a form: its CSRF token, and the session's cookie (which
        ``withhold_session_cookie`` then keeps from a browser that did not send one, but for a
        top-level GET navigation)."""
        response = render_page(
            template, status, csrf_token=self.codec.csrf_token(session), **context
        )
        response.headers.append("Set-Cookie", self.codec.cookie_header(session))
        return response

    @staticmethod
    def error_page(error: OAuth2Error | GatewayError) -> Response:
        """An error page: it has no form, so it needs no session and leaves the cookie alone."""
        if isinstance(error, GatewayError):
            status, description = error.status_code, error.description
        else:
            status, description = 400, error.get_error_description()
        return render_page("error.html", status, error=error.error, description=description)

    def back_to_client(self, response: Response) -> Response:
        location = response.headers.get("location")
        if location is None:
            return response
        redirect = RedirectResponse(with_iss(location, self.server.config.issuer), 302)
        redirect.headers.update(page_headers("unused"))
        return redirect

    async def session(self, http: HTTPRequest) -> LoginSession:
        """The cookie's session, signed out unless its row says it still counts (the nonce is
        kept: a form shown before stays postable, and leads to the login form)."""
        session = self.codec.loads(http.cookies.get(COOKIE))
        if session is None:
            return LoginSession.anonymous()
        if session.user_id is not None and not await run_in_threadpool(
            self.sessions.active, session
        ):
            return LoginSession(session.nonce, issued_at=session.issued_at)
        return session

    async def authorize(self, http: HTTPRequest) -> Response:
        """``GET`` or ``POST /oauth/authorize``: every answer under the session cookie's rule."""
        return withhold_session_cookie(http, await self._authorize(http))

    async def _authorize(self, http: HTTPRequest) -> Response:
        if http.method == "POST" and not is_navigation(http.headers, same_origin=True):
            return self.error_page(NotANavigation())
        session = await self.session(http)
        try:
            request = await oauth_request(http, self.server, query=True, form=False)
            grant = await run_in_threadpool(self.server.get_consent_grant, request)
            data = request.payload.data
            try:
                refuse_unsupported(data, grant.redirect_uri)
                prompt = parse_prompt(data.get("prompt"), data.get("max_age"), grant.redirect_uri)
            except OAuth2Error as error:
                error.state = request.payload.state
                raise
        except OAuth2Error as error:
            if error.redirect_uri:
                return self.back_to_client(self.server.handle_error_response(None, error))
            return self.error_page(error)
        visit = Visit(http, request, grant, session, await self._user(session), prompt)
        if prompt.none:
            return await self._silently(visit)
        if http.method == "GET":
            return await self._show(visit)
        return await self._post(visit)

    async def _user(self, session: LoginSession) -> User | None:
        if session.user_id is None:
            return None

        def load() -> User | None:
            with self.server.storage.session() as db:
                return db.scalar(sa.select(User).where(User.id == session.user_id))

        return await run_in_threadpool(load)

    async def _granted(self, visit: Visit) -> frozenset[str] | None:
        """What the user allowed this client before (None: never asked)."""
        if visit.user is None:
            return None
        return await run_in_threadpool(
            granted_scopes, self.server.storage, visit.user.id, visit.grant.request.client.client_id
        )

    async def _consent_needed(self, visit: Visit) -> tuple[bool, frozenset[str]]:
        """Whether to show the consent page, and the scopes allowed before."""
        granted = await self._granted(visit)
        known = granted or frozenset()
        if visit.prompt.consent:
            return True, known
        if visit.grant.request.client.first_party:
            return False, known
        return granted is None or not visit.scopes <= granted, known

    async def _silently(self, visit: Visit) -> Response:
        """``prompt=none``: "The Authorization Server MUST NOT display any authentication or
        consent user interface pages" (§3.1.2.1); a form posted anyway is interaction too."""
        error: OAuth2Error | None = None
        if visit.http.method != "GET":
            error = InteractionRequiredError()
        elif visit.needs_login:
            error = LoginRequiredError()
        elif (await self._consent_needed(visit))[0]:
            error = ConsentRequiredError()
        if error is None:
            return await self._answer(visit, visit.principal())
        error.redirect_uri = visit.grant.redirect_uri
        error.state = visit.request.payload.state
        return self.back_to_client(self.server.handle_error_response(None, error))

    async def _show(self, visit: Visit, error: str = "", email: str = "") -> Response:
        """The login form (also after a failed login: ``error``), the consent page, or, when
        neither is needed, the answer."""
        client = visit.grant.request.client
        action = str(visit.http.url.replace(scheme="", netloc=""))
        if error or visit.needs_login or visit.user is None:
            return self.render(
                "login.html",
                visit.session,
                status=401 if error else 200,
                action=action,
                client_name=client.name,
                error=error,
                email=email or (visit.user.email if visit.user else ""),
                again=visit.user is not None,
            )
        needed, granted = await self._consent_needed(visit)
        if not needed:
            return await self._answer(visit, visit.principal())
        redirect_uri = visit.grant.request.payload.redirect_uri or client.get_default_redirect_uri()
        lines = scope_lines(
            (visit.grant.request.scope or "").split(),
            self.server.config.scopes.descriptions,
            granted,
        )
        return self.render(
            "consent.html",
            visit.session,
            action=action,
            client_name=client.name,
            email=visit.user.email,
            scopes=lines,
            new_scopes=[line for line in lines if not line.granted],
            redirect_host=urlsplit(redirect_uri).netloc,
        )

    async def _answer(self, visit: Visit, principal: Principal | None) -> Response:
        """The authorization response (a code, or ``access_denied`` for no ``principal``)."""
        response = await run_in_threadpool(
            self.server.create_authorization_response, visit.request, principal, visit.grant
        )
        redirect = self.back_to_client(response)
        if visit.session.fresh_for is not None:
            redirect.headers.append(
                "Set-Cookie", self.codec.cookie_header(visit.session.answered())
            )
        return redirect

    async def _post(self, visit: Visit) -> Response:
        http, session = visit.http, visit.session
        form = await http.form(max_files=0, max_fields=16)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self.codec.check_csrf(session, fields.get("csrf_token")):
            error = InvalidRequestError("The form expired or was not sent from this page.")
            return self.error_page(error)  # the session stays as it was
        action = fields.get("action")
        if action == "login":
            return await self._login(visit, fields)
        if action == "logout":
            await run_in_threadpool(self._end, session)
            return self._again(http, LoginSession.anonymous())
        if visit.needs_login or visit.user is None or action not in ("allow", "deny"):
            return self._again(http, session)
        if action == "deny":  # stores nothing, and leaves what was stored
            return await self._answer(visit, None)
        user, client = visit.user, visit.grant.request.client
        await run_in_threadpool(
            remember, self.server.storage, user.id, client.client_id, visit.scopes
        )
        return await self._answer(visit, visit.principal())

    def end_sessions(self, sids: list[str], user_id: str | None = None) -> None:
        """End the browser sessions ``sids`` (only those of ``user_id``, if given): logout, or
        "Not you?". With ``sessions.logout_revokes_tokens`` their grants are revoked in the
        same transaction, committed before the answer."""
        revoke = self.server.config.sessions.logout_revokes_tokens
        revoker = self.server.revoker

        def end(db: Session) -> list[RevocationEntry]:
            ended = sids
            if user_id is not None:
                ended = list(
                    db.scalars(
                        sa.select(BrowserSession.id).where(
                            BrowserSession.id.in_(sids), BrowserSession.user_id == user_id
                        )
                    )
                )
            self.sessions.end(db, ended)
            if not (revoke and ended):
                return []
            grant_ids = db.scalars(
                sa.select(Grant.id).where(Grant.session_id.in_(ended), Grant.revoked_at.is_(None))
            ).all()
            return revoker.grants(db, grant_ids)

        revoker.revoke(end)

    def _end(self, session: LoginSession) -> None:
        if session.sid is not None:
            self.end_sessions([session.sid])

    def _again(self, http: HTTPRequest, session: LoginSession) -> Response:
        """Post/redirect/get back to the same authorization request."""
        response = RedirectResponse(str(http.url.replace(scheme="", netloc="")), 303)
        response.headers.update({"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", self.codec.cookie_header(session))
        return response

    async def _login(self, visit: Visit, fields: dict[str, str]) -> Response:
        http, session = visit.http, visit.session
        email = fields.get("email", "")
        devices = self.server.devices
        try:
            user = await run_in_threadpool(
                self.server.check_password,
                email,
                fields.get("password", ""),
                visit.request.client_addr,
                devices.loads(http.cookies.get(DEVICE_COOKIE)),
            )
        except TooManyAttempts as refused:
            wait = refused.retry_after
            unit = "second" if wait == 1 else "seconds"
            message = f"Too many failed attempts. Wait {wait} {unit} and try again."
            response = await self._show(visit, error=message, email=email[:320])
            response.headers["Retry-After"] = str(wait)
            return response
        except PasswordsBusy as busy:
            response = self.render(
                "error.html",
                session,
                status=busy.status_code,
                error=busy.error,
                description=busy.description,
                busy=True,
            )
            response.headers.update(busy.headers())
            return response
        if user is None:
            message = "The email or password is not correct."
            return await self._show(visit, error=message, email=email[:320])
        signed_in = session.logged_in(user.id, request_digest(http.url.query))
        await run_in_threadpool(self.sessions.start, signed_in, session)
        response = self._again(http, signed_in)
        # a known device from now on (a new one each sign-in: the cookie of another user, or
        # an old one of this user's, is replaced)
        user_key = self.server.throttle.user_key(user.email)
        response.headers.append("Set-Cookie", devices.cookie_header(user_key))
        return response
