"""The authorization endpoint (RFC 6749 §3.1, §4.1): login, consent, and the redirect back.

GET shows the login form, or the consent page once signed in, or neither: inside a valid
browser session (single sign-on, ``Sessions``) a client the user already allowed the requested
scopes and resources (remembered consent, ``gateway.consents``), or a first-party one, gets its
code at once. The consent page names the resources (RFC 8707) the tokens will reach.
``prompt`` and ``max_age`` (OpenID Connect Core §3.1.2.1, ``gateway.issuer.prompt``) force the
login form or the consent page, or (``prompt=none``) forbid every page: what would need one is
answered ``login_required`` or ``consent_required`` instead. ``prompt=consent`` shows the
consent page to first-party clients too: the client asked for it.

The forms post back to the same URL (the authorization request stays in the query string), so
every POST re-validates the request from scratch. A request whose client or redirect URI is not
valid gets an error page and never a redirect (RFC 6749 §4.1.2.1); any other error goes back to
the client, with ``state`` and ``iss`` (RFC 9207).

A pushed request (RFC 9126, ``gateway.issuer.par``) is named by ``client_id`` and
``request_uri`` alone: its first GET redeems it and redirects to its continuation, which the
forms then post back to; its answer is sent once.

A form POST counts only as a person's navigation from our own page (``is_navigation``, Fetch
Metadata): a script on the issuer's origin could otherwise read a page's CSRF token and post
it (issue 15 §3). And no answer sets or clears the session cookie of a browser that did not
send it, but for the first page of a sign-in (``withhold_session_cookie``, issue 15 §4).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import RedirectResponse, Response

from gateway.consents import ConsentGiven, given_consent, remember
from gateway.errors import NotANavigation, PasswordsBusy
from gateway.issuer.client_documents import client_host, loopback_only
from gateway.issuer.devices import DEVICE_COOKIE
from gateway.issuer.fetch_metadata import is_navigation
from gateway.issuer.html import (
    error_page,
    page_headers,
    render_form,
    with_iss,
    withhold_session_cookie,
)
from gateway.issuer.login import PasswordCheck
from gateway.issuer.oauth_request import OAuthRequest, RequestReader
from gateway.issuer.par import PushedAuthorization, Redeemed
from gateway.issuer.principal import Principal
from gateway.issuer.prompt import Prompt
from gateway.issuer.resource_indicators import ResourceIndicators
from gateway.issuer.scopes import scope_lines
from gateway.issuer.server import Server
from gateway.issuer.session import COOKIE, LoginSession, SessionCodec, Sessions, request_digest
from gateway.issuer.signout import SignOut
from gateway.models import User
from gateway.storage import Storage
from gateway.throttle import TooManyAttempts


@dataclass(frozen=True)
class Visit:
    """One authorization request, as the pages see it."""

    http: HTTPRequest
    request: OAuthRequest
    grant: Any
    session: LoginSession
    user: User | None
    prompt: Prompt
    #: the pushed request (RFC 9126) this one is, None for one sent in the query
    pushed: Redeemed | None = None

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


@dataclass(frozen=True)
class ResourceLine:
    """One resource of the consent page."""

    label: str
    identifier: str
    #: named (``resource_name``): the identifier is shown beside it
    named: bool
    #: allowed before (remembered consent)
    granted: bool


class AuthorizationEndpoint:
    """``/oauth/authorize``. ``issuer``: the ``iss`` of every answer (RFC 9207);
    ``scope_descriptions``: ``[scopes.descriptions]``, for the consent page; ``indicators``:
    what the resources a request names cover, and how the page names them."""

    def __init__(
        self,
        server: Server,
        reader: RequestReader,
        issuer: str,
        codec: SessionCodec,
        sessions: Sessions,
        sign_out: SignOut,
        password_check: PasswordCheck,
        storage: Storage,
        scope_descriptions: Mapping[str, str],
        indicators: ResourceIndicators,
        pushed: PushedAuthorization,
    ) -> None:
        self.server = server
        self.reader = reader
        self.issuer = issuer
        self.codec = codec
        self.sessions = sessions
        self.sign_out = sign_out
        self.password_check = password_check
        self.storage = storage
        self.scope_descriptions = scope_descriptions
        self.indicators = indicators
        self.pushed = pushed

    def render(
        self, template: str, session: LoginSession, status: int = 200, **context: Any
    ) -> Response:
        return render_form(self.codec, template, session, status, **context)

    def back_to_client(self, response: Response) -> Response:
        location = response.headers.get("location")
        if location is None:
            return response
        redirect = RedirectResponse(with_iss(location, self.issuer), 302)
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
            return error_page(NotANavigation())
        session = await self.session(http)
        try:
            request = await self.reader.read(http, query=True, form=False)
            pushed = await self.pushed.open(http, request)  # RFC 9126 §4
            if isinstance(pushed, Response):
                return pushed
            if pushed is not None:
                request = pushed.request
            grant, prompt = await run_in_threadpool(self.pushed.check.check, request)
        except OAuth2Error as error:
            if error.redirect_uri:
                return self.back_to_client(self.server.handle_error_response(None, error))
            return error_page(error)
        user = await self._user(session)
        visit = Visit(http, request, grant, session, user, prompt, pushed)
        if prompt.none:
            return await self._silently(visit)
        if http.method == "GET":
            return await self._show(visit)
        return await self._post(visit)

    async def _user(self, session: LoginSession) -> User | None:
        if session.user_id is None:
            return None

        def load() -> User | None:
            with self.storage.session() as db:
                return db.scalar(sa.select(User).where(User.id == session.user_id))

        return await run_in_threadpool(load)

    async def _granted(self, visit: Visit) -> ConsentGiven | None:
        """What the user allowed this client before (None: never asked)."""
        if visit.user is None:
            return None
        return await run_in_threadpool(
            given_consent, self.storage, visit.user.id, visit.grant.request.client.client_id
        )

    def _resources_allowed(self, granted: ConsentGiven | None) -> frozenset[str]:
        if granted is None:
            return frozenset()
        return frozenset(self.indicators.within(granted.resources))

    async def _consent_needed(self, visit: Visit) -> tuple[bool, ConsentGiven | None]:
        """Whether to show the consent page, and what was allowed before: a consent covers
        a request for no more scopes and no other resources (RFC 8707) than it allowed."""
        granted = await self._granted(visit)
        if visit.prompt.consent:
            return True, granted
        if visit.grant.request.client.first_party:
            return False, granted
        if granted is None or not visit.scopes <= granted.scopes:
            return True, granted
        wanted = frozenset(self.indicators.within(visit.grant.resources))
        return not wanted <= self._resources_allowed(granted), granted

    def _resource_lines(self, visit: Visit, granted: ConsentGiven | None) -> list[ResourceLine]:
        """The resources the tokens will reach, those the gateway serves (the default audience
        may be the issuer's own): the new ones first, then those allowed before."""
        before = self._resources_allowed(granted)
        lines = [
            ResourceLine(r.label, r.identifier, r.name is not None, r.identifier in before)
            for r in self.indicators.described(self.indicators.within(visit.grant.resources))
        ]
        return [line for line in lines if not line.granted] + [
            line for line in lines if line.granted
        ]

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
        try:
            await self.pushed.finish(visit.pushed)
        except OAuth2Error as finished:
            return error_page(finished)
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
                client_host=client_host(client),
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
            self.scope_descriptions,
            granted.scopes if granted else (),
        )
        return self.render(
            "consent.html",
            visit.session,
            action=action,
            client_name=client.name,
            client_host=client_host(client),
            loopback_only=loopback_only(client),
            email=visit.user.email,
            scopes=lines,
            new_scopes=[line for line in lines if not line.granted],
            resources=self._resource_lines(visit, granted),
            redirect_host=urlsplit(redirect_uri).netloc,
        )

    async def _answer(self, visit: Visit, principal: Principal | None) -> Response:
        """The authorization response (a code, or ``access_denied`` for no ``principal``); a
        pushed request's first and last."""
        try:
            await self.pushed.finish(visit.pushed)
        except OAuth2Error as error:
            return error_page(error)
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
            return error_page(error)  # the session stays as it was
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
            remember,
            self.storage,
            user.id,
            client.client_id,
            visit.scopes,
            visit.grant.resources,
            (self.indicators.default,),
        )
        return await self._answer(visit, visit.principal())

    def _end(self, session: LoginSession) -> None:
        if session.sid is not None:
            self.sign_out.end([session.sid])

    def _again(self, http: HTTPRequest, session: LoginSession) -> Response:
        """Post/redirect/get back to the same authorization request."""
        response = RedirectResponse(str(http.url.replace(scheme="", netloc="")), 303)
        response.headers.update({"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", self.codec.cookie_header(session))
        return response

    async def _login(self, visit: Visit, fields: dict[str, str]) -> Response:
        http, session = visit.http, visit.session
        email = fields.get("email", "")
        try:
            user = await run_in_threadpool(
                self.password_check.check,
                email,
                fields.get("password", ""),
                visit.request.client_addr,
                http.cookies.get(DEVICE_COOKIE),
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
        # a known device from now on
        response.headers.append("Set-Cookie", self.password_check.device_cookie_header(user))
        return response
