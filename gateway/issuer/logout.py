"""RP-Initiated Logout 1.0: ``GET|POST /oauth/logout``, the discovery's ``end_session_endpoint``.

Parameters (§2): ``id_token_hint``, ``client_id``, ``post_logout_redirect_uri``, ``state``.

- The hint counts only if it is an ID token of ours (``verify_id_token_hint``); expired is fine.
  With ``client_id`` too, the two must name the same client (its ``aud``).
- ``post_logout_redirect_uri`` must equal, as a string, one of the client's registered
  ``post_logout_redirect_uris`` (§3); with no client to look it up on, or no match, the answer
  is an error page (400), never a redirect: "the OP MUST NOT perform post-logout redirection"
  to a URI it did not verify.
- A valid hint whose ``sid`` is this browser's session, or names a session when the browser
  sent none (a cross-site POST carries no SameSite=Lax cookie), ends it at once. Anything else
  asks the user first (§2: "the OP SHOULD ask the End-User whether to log out"): a confirmation
  page whose form is CSRF-bound to the browser's session, as the authorization pages are, and
  posted as a person's navigation from it (``is_navigation``, issue 15 §3).
- A POST that sent no session cookie (another site's form) is asked on a GET instead: a 303 to
  the confirmation page, with the verified ``client_id`` and ``post_logout_redirect_uri`` and
  ``state``. The browser follows it as a top-level navigation, which carries its SameSite=Lax
  cookie, so the page is bound to the session the user would end. No answer sets or clears the
  cookie of a browser that did not send it (``withhold_session_cookie``, issue 15 §4): a fresh
  cookie there would sign the user out without asking.
- Ending a session (``SignOut``, as the consent page's "Not you?" does) sets its row's
  ``ended_at``: every replica then refuses the session, even from a replayed copy of the old
  cookie. With ``sessions.logout_revokes_tokens`` the grants made in it are
  revoked in the same transaction (``Revoker``: durable before the answer). Every answer that
  ends a session clears the cookie.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import OAuth2Error
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import RedirectResponse, Response

from gateway.errors import NotANavigation
from gateway.issuer.fetch_metadata import is_navigation
from gateway.issuer.html import (
    error_page,
    page_headers,
    render_form,
    render_page,
    with_param,
    withhold_session_cookie,
)
from gateway.issuer.idtoken import verify_id_token_hint
from gateway.issuer.oauth_request import RequestReader
from gateway.issuer.records import ClientLookup
from gateway.issuer.session import COOKIE, LoginSession, SessionCodec, Sessions
from gateway.issuer.signout import SignOut
from gateway.keys import KeyRing
from gateway.models import Client

PATH = "/oauth/logout"
#: longer than any URI worth registering; longer ones are refused without a database look-up
MAX_URI_LENGTH = 2048


class LogoutRefused(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def with_state(uri: str, state: str | None) -> str:
    return with_param(uri, "state", state) if state else uri


class LogoutEndpoint:
    """``issuer`` and ``keyring``: whose ID tokens a hint must be; ``clients``: where a
    ``post_logout_redirect_uri`` is looked up."""

    def __init__(
        self,
        reader: RequestReader,
        clients: ClientLookup,
        issuer: str,
        keyring: KeyRing,
        codec: SessionCodec,
        sessions: Sessions,
        sign_out: SignOut,
    ) -> None:
        self.reader = reader
        self.clients = clients
        self.issuer = issuer
        self.keyring = keyring
        self.codec = codec
        self.sessions = sessions
        self.sign_out = sign_out

    async def logout(self, http: HTTPRequest) -> Response:
        """``GET`` or ``POST /oauth/logout``: every answer under the session cookie's rule."""
        return withhold_session_cookie(http, await self._logout(http))

    async def _logout(self, http: HTTPRequest) -> Response:
        sent_cookie = COOKIE in http.cookies
        cookie = self.codec.loads(http.cookies.get(COOKIE))
        try:
            request = await self.reader.read(http, query=True, form=True)
            params = request.payload.data
            hint, client, redirect_uri = await run_in_threadpool(self._check, params)
        except OAuth2Error as error:
            return self._refused(error.get_error_description() or "The request is not valid.")
        except LogoutRefused as refused:
            return self._refused(refused.description)
        state = params.get("state") or None
        signed_in = cookie is not None and await run_in_threadpool(self.sessions.active, cookie)
        if http.method == "POST" and params.get("action") == "logout":
            if not is_navigation(http.headers, same_origin=True):
                return error_page(NotANavigation())
            if cookie is None or not self.codec.check_csrf(cookie, params.get("csrf_token")):
                return self._refused("The form expired or was not sent from this page.")
            return await self._end([cookie.sid] if cookie.sid else [], redirect_uri, state, True)
        if hint is not None:
            if signed_in and cookie is not None and cookie.sid == hint["sid"]:
                return await self._end([hint["sid"]], redirect_uri, state, True)
            if not signed_in:
                # no session in this browser (or not sent): the hint names the one to end
                user_id = str(hint["sub"])
                return await self._end([hint["sid"]], redirect_uri, state, sent_cookie, user_id)
        if http.method == "POST" and not sent_cookie:
            return self._ask_on_a_get(client, redirect_uri, state)
        session = cookie or LoginSession.anonymous()
        return render_form(
            self.codec,
            "logout.html",
            session,
            action=PATH,
            client_name=client.name if client is not None else None,
            signed_in=signed_in,
            hidden={
                "client_id": client.client_id if client is not None else "",
                "post_logout_redirect_uri": redirect_uri or "",
                "state": state or "",
            },
        )

    def _check(
        self, params: dict[str, str]
    ) -> tuple[dict[str, Any] | None, Client | None, str | None]:
        """The hint (if valid), the client and the verified redirect URI (if asked for)."""
        raw_hint = params.get("id_token_hint")
        hint = None
        if raw_hint:
            hint = verify_id_token_hint(self.keyring, self.issuer, raw_hint)
        client_id = params.get("client_id") or None
        if hint is not None:
            if client_id is not None and client_id != hint["aud"]:
                raise LogoutRefused("The 'client_id' is not the ID token's audience.")
            client_id = hint["aud"]
        client = self.clients(client_id) if client_id else None
        uri = params.get("post_logout_redirect_uri") or None
        if uri is not None:
            if client is None:
                raise LogoutRefused(
                    "A 'post_logout_redirect_uri' needs an 'id_token_hint' or a 'client_id'."
                )
            if len(uri) > MAX_URI_LENGTH or uri not in (client.post_logout_redirect_uris or []):
                raise LogoutRefused("The 'post_logout_redirect_uri' is not registered.")
        return hint, client, uri

    async def _end(
        self,
        sids: list[str],
        redirect_uri: str | None,
        state: str | None,
        clear_cookie: bool,
        user_id: str | None = None,
    ) -> Response:
        """End ``sids``; ``clear_cookie``: the browser sent its cookie, which goes with them."""
        await run_in_threadpool(self.sign_out.end, sids, user_id)
        if redirect_uri is not None:
            response: Response = RedirectResponse(with_state(redirect_uri, state), 302)
            response.headers.update(page_headers("unused"))
        else:
            response = render_page("logout.html", done=True)
        if clear_cookie:
            response.headers.append("Set-Cookie", self.codec.clear_cookie_header())
        return response

    @staticmethod
    def _ask_on_a_get(
        client: Client | None, redirect_uri: str | None, state: str | None
    ) -> Response:
        """Post/redirect/get to the confirmation page, with what was verified (the hint, if
        any, was not valid: it is left out)."""
        params = {
            "client_id": client.client_id if client is not None else None,
            "post_logout_redirect_uri": redirect_uri,
            "state": state,
        }
        query = urlencode({name: value for name, value in params.items() if value})
        response = RedirectResponse(PATH + (f"?{query}" if query else ""), 303)
        response.headers.update({"Cache-Control": "no-store"})
        return response

    def _refused(self, description: str) -> Response:
        """Never a redirect to what was not verified: an error page (no session ended)."""
        return render_page("error.html", 400, error="invalid_request", description=description)
