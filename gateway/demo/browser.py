"""``gateway demo``'s browser client: a public OpenID Connect client on the demo upstream's
origin, so that ``make run`` shows the browser flow end to end (issue 10, point 7).

- ``GET /app/``: the start page, with a "Sign in" button.
- ``GET /app/login``: starts a sign-in. ``state``, ``nonce`` and the PKCE verifier (RFC 7636,
  S256) stay in this process, keyed by a random id in a cookie on this origin; the browser is
  sent to the authorization endpoint.
- ``GET /app/callback``: the redirect URI. It checks the cookie's ``state`` (RFC 6749 §10.12)
  and ``iss`` (RFC 9207), exchanges the code at the token endpoint from this process (no CORS,
  no token in the browser's JavaScript: there is none), verifies the ID token (OIDC Core
  §3.1.3.7: signature against the live JWKS, ``iss``, ``aud``, ``nonce``, ``exp``; ``at_hash``
  when present, §3.1.3.6; in ``relying_party``), calls the proxied demo API and UserInfo with the
  access token, and shows it all, with a logout link (RP-Initiated Logout 1.0) back to the
  start page.

The callback's query is the attacker's: every value on these pages goes through Jinja's
autoescape. Pages carry the issuer pages' protections: CSP with a nonce'd style block and
nothing else, no framing, no caching, no referrer (the callback URL holds the code).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader

from gateway.demo.relying_party import Answer, SignInFailed, fetch, s256, verify_id_token

APP_PATH = "/app/"
LOGIN_PATH = "/app/login"
CALLBACK_PATH = "/app/callback"
COOKIE = "gateway_demo_app"
#: a sign-in not finished within this many seconds is forgotten
PENDING_TTL = 600
MAX_PENDING = 256

Scope = dict[str, Any]
Receive = Any
Send = Any


def browser_scope(api_scope: str) -> str:
    return f"openid profile email {api_scope}"


@dataclass(frozen=True)
class Pending:
    """A sign-in started here, waiting for its callback."""

    state: str
    nonce: str
    verifier: str
    started_at: float


# --- pages ------------------------------------------------------------------------------------

_PAGES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)


def _pretty(answer: Answer) -> str:
    """JSON indented; the echo's header pairs as one object, to read at a glance."""
    parsed = answer.json()
    if parsed is None:
        return answer.body.decode("utf-8", "replace")
    if isinstance(parsed, dict) and isinstance(parsed.get("headers"), list):
        parsed["headers"] = {str(pair[0]): pair[1] for pair in parsed["headers"]}
    return json.dumps(parsed, indent=2, sort_keys=True)


def _short(token: str) -> str:
    return token if len(token) <= 24 else f"{token[:24]}… ({len(token)} characters)"


# --- the app ----------------------------------------------------------------------------------


@dataclass
class DemoApp:
    """The browser client as a raw ASGI app for the paths under ``/app/``."""

    #: where this process reaches the gateway (discovery, then what it names)
    gateway_url: str
    client_id: str
    redirect_uri: str
    home_uri: str
    api_path: str
    scope: str
    email: str
    password: str
    pending: OrderedDict[str, Pending] = field(default_factory=OrderedDict)
    logouts: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _metadata: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await self._page(send, 405, "demo_error.html", title="Only GET here", home=APP_PATH)
            return
        query = scope["query_string"].decode("latin-1")
        try:
            if path in (APP_PATH, APP_PATH.rstrip("/")):
                await self._home(send, query)
            elif path == LOGIN_PATH:
                await self._login(send)
            elif path == CALLBACK_PATH:
                await self._callback(send, query, _cookie(scope))
            else:
                raise SignInFailed("No such page", path, 404)
        except SignInFailed as failed:
            await self._page(
                send,
                failed.status,
                "demo_error.html",
                title=failed.title,
                detail=failed.detail,
                home=APP_PATH,
            )

    async def metadata(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0, read once."""
        if self._metadata is None:
            url = f"{self.gateway_url}/.well-known/openid-configuration"
            answer = await fetch(url)
            body = answer.json()
            if answer.status != 200 or not isinstance(body, dict):
                raise SignInFailed("Discovery failed", f"{url} answered {answer.status}", 502)
            self._metadata = body
        return self._metadata

    async def _home(self, send: Send, query: str) -> None:
        state = _one(parse_qs(query), "state")
        signed_out = bool(state) and self.logouts.pop(state, None) is not None
        metadata = await self.metadata()
        await self._page(
            send,
            200,
            "demo_home.html",
            issuer=metadata["issuer"],
            scope=self.scope,
            email=self.email,
            password=self.password,
            login=LOGIN_PATH,
            signed_out=signed_out,
        )

    async def _login(self, send: Send) -> None:
        metadata = await self.metadata()
        now = time.time()
        started = Pending(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            started_at=now,
        )
        login_id = secrets.token_urlsafe(24)
        _remember(self.pending, login_id, started)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.scope,
                "state": started.state,
                "nonce": started.nonce,
                "code_challenge": s256(started.verifier),
                "code_challenge_method": "S256",
            }
        )
        cookie = (
            f"{COOKIE}={login_id}; Path={APP_PATH}; Max-Age={PENDING_TTL}; HttpOnly; SameSite=Lax"
        )
        await _send(
            send,
            302,
            b"",
            [
                (b"location", f"{metadata['authorization_endpoint']}?{query}".encode()),
                (b"set-cookie", cookie.encode()),
                (b"cache-control", b"no-store"),
            ],
        )

    async def _callback(self, send: Send, query: str, login_id: str | None) -> None:
        params = parse_qs(query, keep_blank_values=True)
        if any(len(values) > 1 for values in params.values()):
            raise SignInFailed("A parameter of the callback is repeated")
        started = self.pending.get(login_id or "")
        if started is None or started.started_at + PENDING_TTL < time.time():
            raise SignInFailed(
                "No sign-in in progress in this browser",
                "Each sign-in is used once: start again from the start page.",
            )
        if not hmac.compare_digest(_one(params, "state").encode(), started.state.encode()):
            raise SignInFailed("The state does not match the sign-in started in this browser")
        self.pending.pop(login_id or "", None)  # one callback per sign-in
        metadata = await self.metadata()
        if metadata.get("authorization_response_iss_parameter_supported") and (
            _one(params, "iss") != metadata["issuer"]
        ):  # RFC 9207 §2.4: a mix-up attack, or a response from elsewhere
            raise SignInFailed("The response names another issuer", _one(params, "iss"))
        if "error" in params:
            detail = _one(params, "error")
            if _one(params, "error_description"):
                detail += f": {_one(params, 'error_description')}"
            raise SignInFailed("The gateway refused the sign-in", detail)
        code = _one(params, "code")
        if not code:
            raise SignInFailed("The callback carries no code")
        token = await self._redeem(metadata, code, started)
        header, claims, checks = await verify_id_token(
            metadata, token["id_token"], token["access_token"], self.client_id, started.nonce
        )
        access = token["access_token"]
        bearer = {"Authorization": f"Bearer {access}"}
        api_url = f"{self.gateway_url}{self.api_path}"
        api, userinfo = await asyncio.gather(
            fetch(api_url, headers=bearer), fetch(metadata["userinfo_endpoint"], headers=bearer)
        )
        logout_state = secrets.token_urlsafe(16)
        _remember(self.logouts, logout_state, time.time())
        end_session = metadata.get(
            "end_session_endpoint", f"{metadata['issuer'].rstrip('/')}/oauth/logout"
        )
        logout_url = (
            end_session
            + "?"
            + urlencode(
                {
                    "id_token_hint": token["id_token"],
                    "post_logout_redirect_uri": self.home_uri,
                    "state": logout_state,
                }
            )
        )
        fields = [
            ("token_type", str(token.get("token_type", ""))),
            ("scope", str(token.get("scope", ""))),
            ("expires_in", str(token.get("expires_in", ""))),
            ("access_token", _short(access)),
            ("refresh_token", _short(token["refresh_token"]) if "refresh_token" in token else "-"),
        ]
        clear = f"{COOKIE}=; Path={APP_PATH}; Max-Age=0; HttpOnly; SameSite=Lax"
        await self._page(
            send,
            200,
            "demo_result.html",
            [(b"set-cookie", clear.encode())],
            claims=claims,
            claims_json=json.dumps(claims, indent=2, sort_keys=True),
            header=json.dumps(header, indent=2, sort_keys=True),
            id_token=token["id_token"],
            checks=checks,
            token_fields=fields,
            api=api,
            api_url=api_url,
            api_body=_pretty(api),
            userinfo=userinfo,
            userinfo_url=metadata["userinfo_endpoint"],
            userinfo_body=_pretty(userinfo),
            logout_url=logout_url,
            home=APP_PATH,
        )

    async def _redeem(
        self, metadata: dict[str, Any], code: str, started: Pending
    ) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5); a public client sends its
        client_id in the form."""
        answer = await fetch(
            metadata["token_endpoint"],
            form={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "code_verifier": started.verifier,
            },
        )
        body = answer.json()
        if answer.status != 200 or not isinstance(body, dict):
            error = body if isinstance(body, dict) else {}
            detail = (
                f"{answer.status} {error.get('error', '')}: {error.get('error_description', '')}"
            )
            raise SignInFailed("The token endpoint refused the code", detail)
        if not isinstance(body.get("access_token"), str) or not isinstance(
            body.get("id_token"), str
        ):
            raise SignInFailed("The token response has no access token or no ID token")
        return body

    async def _page(
        self,
        send: Send,
        status: int,
        template: str,
        extra: list[tuple[bytes, bytes]] | None = None,
        **context: Any,
    ) -> None:
        nonce = secrets.token_urlsafe(12)
        html = _PAGES.get_template(template).render(nonce=nonce, **context)
        csp = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'"
        )
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            *(extra or []),
        ]
        await _send(send, status, html.encode(), headers)


def _one(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _cookie(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Add ``key``, dropping the oldest past ``MAX_PENDING`` (a flood of sign-ins never
    grows memory without bound)."""
    table[key] = value
    while len(table) > MAX_PENDING:
        table.popitem(last=False)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
