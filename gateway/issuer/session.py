"""The login session of the authorization pages: a signed cookie, and CSRF tokens bound to it.

The cookie holds ``{"n": nonce, "i": issued at}`` and, once signed in, ``"u": user id, "t":
auth time, "s": session id`` as base64url JSON with an HMAC-SHA256 tag. It is HttpOnly,
SameSite=Lax and, on an https issuer, Secure. A CSRF token is an HMAC of the session nonce: a
form posted from another site has no cookie to match (double-submit, bound to the session).
Logging in issues a new nonce, so a session id planted before login is worthless after it.

The session id is the OpenID Connect ``sid`` of the ID tokens issued in this login: random,
made at login and kept until the next one; never the nonce, so no ID token reveals what the
CSRF tokens are made from.

The cookie only carries the session; the ``browser_sessions`` row is the truth (``Sessions``):
a signed-in cookie counts only while its row exists, is not ended (logout, a newer login in
the same browser) and is within ``sessions.lifetime`` of the login and ``sessions.idle_timeout``
of its last use. Every replica reads the row, so a logout holds everywhere, even against a
replayed copy of the old cookie.

``fresh_for`` ("r") names the authorization request a login was made for (a digest of its
query string): ``prompt=login`` and ``max_age`` force the login form, and the same request,
back after the login's post/redirect/get, must not force it again. It is dropped once the
request is answered, so a later request with the same parameters asks again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.models import BrowserSession
from gateway.storage import Storage

COOKIE = "gateway_session"
#: ``sessions.lifetime``'s default: the cookie's Max-Age follows the configured lifetime
DEFAULT_LIFETIME = 8 * 3600.0
#: ``last_seen_at`` is written at most this often per session: one UPDATE a minute, not one
#: per authorization request; the idle timeout is that much less exact
TOUCH_INTERVAL = 60.0


@dataclass(frozen=True)
class LoginSession:
    nonce: str
    user_id: str | None = None
    auth_time: float | None = None
    issued_at: float = 0.0
    #: the browser login session, the ID token's ``sid``; set exactly when ``user_id`` is
    sid: str | None = None
    #: the authorization request this login was made for (``request_digest``), until answered
    fresh_for: str | None = None

    @classmethod
    def anonymous(cls) -> LoginSession:
        return cls(secrets.token_urlsafe(16), issued_at=time.time())

    def logged_in(self, user_id: str, fresh_for: str | None = None) -> LoginSession:
        now = time.time()
        sid = secrets.token_urlsafe(16)
        return LoginSession(secrets.token_urlsafe(16), user_id, now, now, sid, fresh_for)

    def answered(self) -> LoginSession:
        """The request the login was made for has its answer: the next one is not fresh."""
        return self if self.fresh_for is None else replace(self, fresh_for=None)


def request_digest(query: str) -> str:
    """What ``fresh_for`` holds: the authorization request, by its query string (the login's
    post/redirect/get comes back to the very same URL)."""
    return _b64(hashlib.sha256(query.encode()).digest()[:12])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, secret: bytes, secure: bool, lifetime: float = DEFAULT_LIFETIME) -> None:
        self._key = hashlib.sha256(b"gateway-session\x00" + secret).digest()
        self._csrf_key = hashlib.sha256(b"gateway-csrf\x00" + secret).digest()
        self.secure = secure
        self.lifetime = lifetime

    def _tag(self, data: str) -> str:
        return _b64(hmac.new(self._key, data.encode(), hashlib.sha256).digest())

    def dumps(self, session: LoginSession) -> str:
        payload = {"n": session.nonce, "i": session.issued_at}
        if session.user_id is not None:
            payload.update(u=session.user_id, t=session.auth_time or 0.0, s=session.sid or "")
            if session.fresh_for:
                payload["r"] = session.fresh_for
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
                payload.get("r"),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if session.user_id is not None and not (isinstance(session.sid, str) and session.sid):
            return None  # signed in before session ids existed: sign in again
        if session.issued_at + self.lifetime < time.time():
            return None
        return session

    def cookie_header(self, session: LoginSession) -> str:
        return self._header(self.dumps(session), int(self.lifetime))

    def clear_cookie_header(self) -> str:
        """The cookie removed (RFC 6265 §5.2.2: Max-Age=0), on the path it was set on."""
        return self._header("", 0)

    def _header(self, value: str, max_age: int) -> str:
        attrs = [f"{COOKIE}={value}", "Path=/oauth", f"Max-Age={max_age}"]
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


class Sessions:
    """The ``browser_sessions`` rows: made at login, checked at every use, ended at logout."""

    def __init__(self, storage: Storage, lifetime: float, idle_timeout: float) -> None:
        self.storage = storage
        self.lifetime = lifetime
        self.idle_timeout = idle_timeout
        #: a short idle timeout needs its sessions' use recorded more often than that
        self.touch_interval = min(TOUCH_INTERVAL, idle_timeout / 4)

    def start(self, login: LoginSession, previous: LoginSession | None = None) -> None:
        """Record ``login``; a signed-in ``previous`` session of this browser ends with it."""
        if login.sid is None or login.user_id is None:
            raise ValueError("only a signed-in session has a row")
        auth_time = login.auth_time or time.time()
        with self.storage.session(write=True) as db:
            if previous is not None and previous.sid is not None:
                self.end(db, [previous.sid])
            db.add(
                BrowserSession(
                    id=login.sid,
                    user_id=login.user_id,
                    auth_time=auth_time,
                    last_seen_at=auth_time,
                    expires_at=auth_time + self.lifetime,
                )
            )

    def active(self, session: LoginSession) -> bool:
        """Whether ``session`` is signed in and its row says it still counts; its use is
        recorded (``last_seen_at``), at most once a ``touch_interval``."""
        if session.user_id is None or session.sid is None:
            return False
        sid = session.sid
        now = time.time()
        row = self.storage.read(
            lambda conn: conn.execute(
                sa.select(
                    BrowserSession.user_id,
                    BrowserSession.last_seen_at,
                    BrowserSession.expires_at,
                    BrowserSession.ended_at,
                ).where(BrowserSession.id == sid)
            ).first()
        )
        if row is None or row.user_id != session.user_id or row.ended_at is not None:
            return False
        if row.expires_at <= now or row.last_seen_at + self.idle_timeout <= now:
            return False
        if row.last_seen_at + self.touch_interval < now:
            with self.storage.writing() as conn:
                conn.execute(
                    sa.update(BrowserSession)
                    .where(BrowserSession.id == sid, BrowserSession.last_seen_at < now)
                    .values(last_seen_at=now)
                )
        return True

    @staticmethod
    def end(db: Session, sids: list[str]) -> int:
        """End the sessions ``sids`` in ``db``'s transaction; returns how many were live."""
        if not sids:
            return 0
        result = db.execute(
            sa.update(BrowserSession)
            .where(BrowserSession.id.in_(sids), BrowserSession.ended_at.is_(None))
            .values(ended_at=time.time())
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
