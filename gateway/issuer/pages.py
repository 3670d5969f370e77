"""The authorization endpoint (RFC 6749 §3.1, §4.1): login, consent, and the redirect back.

GET shows the login form, or the consent page once signed in. The forms post back to the same
URL (the authorization request stays in the query string), so every POST re-validates the
request from scratch. A request whose client or redirect URI is not valid gets an error page
and never a redirect (RFC 6749 §4.1.2.1); any other error goes back to the client, with ``state``
and ``iss`` (RFC 9207).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import RedirectResponse, Response

from gateway.errors import PasswordsBusy
from gateway.issuer.endpoints import oauth_request
from gateway.issuer.server import Request, Server
from gateway.issuer.session import COOKIE, LoginSession, SessionCodec
from gateway.issuer.tokens import Principal
from gateway.models import User
from gateway.throttle import TooManyAttempts

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _page_headers(nonce: str) -> dict[str, str]:
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


def with_iss(location: str, issuer: str) -> str:
    """RFC 9207: the authorization response names its issuer."""
    parts = urlsplit(location)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("iss", issuer)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class AuthorizePages:
    def __init__(self, server: Server, codec: SessionCodec) -> None:
        self.server = server
        self.codec = codec

    def render(
        self, template: str, session: LoginSession, status: int = 200, **context: Any
    ) -> Response:
        nonce = secrets.token_urlsafe(12)
        html = TEMPLATES.get_template(template).render(
            csp_nonce=nonce, csrf_token=self.codec.csrf_token(session), **context
        )
        response = Response(html, status, _page_headers(nonce), media_type="text/html")
        response.headers.append("Set-Cookie", self.codec.cookie_header(session))
        return response

    def error_page(self, session: LoginSession, error: OAuth2Error) -> Response:
        return self.render(
            "error.html",
            session,
            status=400,
            error=error.error,
            description=error.get_error_description(),
        )

    def back_to_client(self, response: Response) -> Response:
        location = response.headers.get("location")
        if location is None:
            return response
        redirect = RedirectResponse(with_iss(location, self.server.config.issuer), 302)
        redirect.headers.update(_page_headers("unused"))
        return redirect

    async def authorize(self, http: HTTPRequest) -> Response:
        session = self.codec.loads(http.cookies.get(COOKIE)) or LoginSession.anonymous()
        try:
            request = await oauth_request(http, self.server, query=True, form=False)
            grant = await run_in_threadpool(self.server.get_consent_grant, request)
        except OAuth2Error as error:
            if error.redirect_uri:
                return self.back_to_client(self.server.handle_error_response(None, error))
            return self.error_page(session, error)
        if http.method == "GET":
            return await self._show(http, session, grant)
        return await self._post(http, session, request, grant)

    async def _user(self, session: LoginSession) -> User | None:
        if session.user_id is None:
            return None

        def load() -> User | None:
            with self.server.storage.session() as db:
                return db.scalar(sa.select(User).where(User.id == session.user_id))

        return await run_in_threadpool(load)

    async def _show(
        self, http: HTTPRequest, session: LoginSession, grant: Any, error: str = "", email: str = ""
    ) -> Response:
        client = grant.request.client
        action = str(http.url.replace(scheme="", netloc=""))
        user = await self._user(session)
        if user is None:
            return self.render(
                "login.html",
                session,
                status=401 if error else 200,
                action=action,
                client_name=client.name,
                error=error,
                email=email,
            )
        redirect_uri = grant.request.payload.redirect_uri or client.get_default_redirect_uri()
        return self.render(
            "consent.html",
            session,
            action=action,
            client_name=client.name,
            email=user.email,
            scopes=grant.request.scope.split(),
            redirect_host=urlsplit(redirect_uri).netloc,
        )

    async def _post(
        self, http: HTTPRequest, session: LoginSession, request: Request, grant: Any
    ) -> Response:
        form = await http.form(max_files=0, max_fields=16)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self.codec.check_csrf(session, fields.get("csrf_token")):
            error = InvalidRequestError("The form expired or was not sent from this page.")
            return self.error_page(LoginSession.anonymous(), error)
        action = fields.get("action")
        if action == "login":
            return await self._login(http, session, grant, fields, request.client_addr)
        if action == "logout":
            return self._again(http, LoginSession.anonymous())
        user = await self._user(session)
        if user is None or action not in ("allow", "deny"):
            return self._again(http, session)
        allowed = action == "allow"
        principal = Principal.new(user, session.auth_time, session.sid) if allowed else None
        response = await run_in_threadpool(
            self.server.create_authorization_response, request, principal, grant
        )
        return self.back_to_client(response)

    def _again(self, http: HTTPRequest, session: LoginSession) -> Response:
        """Post/redirect/get back to the same authorization request."""
        response = RedirectResponse(str(http.url.replace(scheme="", netloc="")), 303)
        response.headers.update({"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", self.codec.cookie_header(session))
        return response

    async def _login(
        self,
        http: HTTPRequest,
        session: LoginSession,
        grant: Any,
        fields: dict[str, str],
        client_addr: str,
    ) -> Response:
        email = fields.get("email", "")
        try:
            user = await run_in_threadpool(
                self.server.check_password, email, fields.get("password", ""), client_addr
            )
        except TooManyAttempts as refused:
            wait = refused.retry_after
            unit = "second" if wait == 1 else "seconds"
            message = f"Too many failed attempts. Wait {wait} {unit} and try again."
            response = await self._show(http, session, grant, error=message, email=email[:320])
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
            return await self._show(http, session, grant, error=message, email=email[:320])
        return self._again(http, session.logged_in(user.id))
