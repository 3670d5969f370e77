"""The login session of the authorization pages: a signed cookie, and CSRF tokens bound to it.

The cookie holds ``{"n": nonce, "i": issued at}`` and, once signed in, ``"u": user id, "t":
auth time, "s": session id`` as base64url JSON with an HMAC-SHA256 tag. It is HttpOnly,
SameSite=Lax and, on an https issuer, Secure. A CSRF token is an HMAC of the session nonce: a
form posted from another site has no cookie to match (double-submit, bound to the session).
Logging in issues a new nonce, so a session id planted before login is worthless after it.

The session id is the OpenID Connect ``sid`` of the ID tokens issued in this login: random,
made at login and kept until the next one; never the nonce, so no ID token reveals what the
CSRF tokens are made from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "gateway_session"
MAX_AGE = 8 * 3600


@dataclass(frozen=True)
class LoginSession:
    nonce: str
    user_id: str | None = None
    auth_time: float | None = None
    issued_at: float = 0.0
    #: the browser login session, the ID token's ``sid``; set exactly when ``user_id`` is
    sid: str | None = None

    @classmethod
    def anonymous(cls) -> LoginSession:
        return cls(secrets.token_urlsafe(16), issued_at=time.time())

    def logged_in(self, user_id: str) -> LoginSession:
        now = time.time()
        return LoginSession(secrets.token_urlsafe(16), user_id, now, now, secrets.token_urlsafe(16))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, secret: bytes, secure: bool) -> None:
        self._key = hashlib.sha256(b"gateway-session\x00" + secret).digest()
        self._csrf_key = hashlib.sha256(b"gateway-csrf\x00" + secret).digest()
        self.secure = secure

    def _tag(self, data: str) -> str:
        return _b64(hmac.new(self._key, data.encode(), hashlib.sha256).digest())

    def dumps(self, session: LoginSession) -> str:
        payload = {"n": session.nonce, "i": session.issued_at}
        if session.user_id is not None:
            payload.update(u=session.user_id, t=session.auth_time or 0.0, s=session.sid or "")
        data = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{data}.{self._tag(data)}"

    def loads(self, cookie: str | None) -> LoginSession | None:
        # compare_digest refuses str with non-ASCII characters (TypeError): no tag has them
        if not cookie or len(cookie) > 1024 or cookie.count(".") != 1 or not cookie.isascii():
            return None
        data, tag = cookie.split(".")
        if not hmac.compare_digest(tag, self._tag(data)):
            return None
        try:
            payload = json.loads(_unb64(data))
            session = LoginSession(
                str(payload["n"]),
                payload.get("u"),
                payload.get("t"),
                float(payload["i"]),
                payload.get("s"),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if session.user_id is not None and not (isinstance(session.sid, str) and session.sid):
            return None  # signed in before session ids existed: sign in again
        if session.issued_at + MAX_AGE < time.time():
            return None
        return session

    def cookie_header(self, session: LoginSession) -> str:
        attrs = [f"{COOKIE}={self.dumps(session)}", "Path=/oauth", f"Max-Age={MAX_AGE}"]
        attrs += ["HttpOnly", "SameSite=Lax"]
        if self.secure:
            attrs.append("Secure")
        return "; ".join(attrs)

    def csrf_token(self, session: LoginSession) -> str:
        return _b64(hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).digest())

    def check_csrf(self, session: LoginSession, token: str | None) -> bool:
        if not token or not token.isascii():  # compare_digest refuses non-ASCII str
            return False
        return hmac.compare_digest(self.csrf_token(session), token)
