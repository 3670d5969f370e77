"""Known-device cookies: a browser a user signed in with skips the throttle's per-user delay.

OWASP's "device cookies" (Slow Down Online Guessing Attacks with Device Cookies): under a
guessing attack spread over many addresses, every attempt for the user waits (gateway/
throttle.py), the real user's too, unless their browser shows it signed in as them before.
After a successful sign-in on the login page (never the password grant) the browser gets
``gateway_device``: HttpOnly, SameSite=Lax, Secure on an https issuer, ``Path=/oauth/``,
``Max-Age`` = ``[throttle] device_ttl``. Its value is

    <user key>.<device id>.<issued at, ms>.<HMAC-SHA256 tag, base64url>

with the user named by the throttle's keyed hash (``LoginThrottle.user_key``, never the
e-mail), a random device id, and a key derived from ``keys/session.key`` for this cookie
alone. This module only proves a cookie is ours and unexpired (``KnownDevice``); whether it
vouches for the user trying (the same user, not forgotten, not exhausted by failures) is the
throttle's to decide, in its one read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import time

from gateway.throttle import KnownDevice

DEVICE_COOKIE = "gateway_device"
#: the path the browser sends it on: the login page is ``/oauth/authorize``
DEVICE_COOKIE_PATH = "/oauth/"
_CONTEXT = b"gateway known-device cookie v1"
#: 64 hex user key, 22 base64url device id (128 bits), at most 15 digits of ms, 43 tag: nothing
#: longer, nothing non-ASCII
_VALUE = re.compile(r"([0-9a-f]{64})\.([A-Za-z0-9_-]{22})\.([0-9]{1,15})\.([A-Za-z0-9_-]{43})")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DeviceCodec:
    """Issues and verifies known-device cookies; ``ttl``: ``[throttle] device_ttl``."""

    def __init__(self, secret: bytes, secure: bool, ttl: float) -> None:
        # a key of its own: no session cookie or throttle user key is ever a valid tag
        self._key = hmac.new(secret, _CONTEXT, hashlib.sha256).digest()
        self.secure = secure
        self.ttl = ttl

    def _tag(self, data: str) -> str:
        return _b64(hmac.new(self._key, data.encode(), hashlib.sha256).digest())

    def dumps(self, user_key: str, now: float | None = None) -> str:
        """A new device's cookie value for the user ``user_key``, issued at ``now``."""
        now = time.time() if now is None else now
        # issued at, rounded down: a cookie is never younger than it says (a forget at the
        # same moment covers it)
        data = f"{user_key}.{secrets.token_urlsafe(16)}.{math.floor(now * 1000)}"
        return f"{data}.{self._tag(data)}"

    def loads(self, value: str | None, now: float | None = None) -> KnownDevice | None:
        """The device a cookie value names, if it is ours, intact and unexpired; else None."""
        found = _VALUE.fullmatch(value) if value else None
        if found is None:
            return None
        user_key, device_id, issued_ms, tag = found.groups()
        if not hmac.compare_digest(tag, self._tag(f"{user_key}.{device_id}.{issued_ms}")):
            return None
        issued_at = int(issued_ms) / 1000
        now = time.time() if now is None else now
        if issued_at + self.ttl <= now:
            return None
        return KnownDevice(user_key, device_id, issued_at)

    def cookie_header(self, user_key: str, now: float | None = None) -> str:
        """``Set-Cookie`` for a new device of ``user_key``."""
        attrs = [
            f"{DEVICE_COOKIE}={self.dumps(user_key, now)}",
            f"Path={DEVICE_COOKIE_PATH}",
            f"Max-Age={max(1, int(self.ttl))}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure:
            attrs.append("Secure")
        return "; ".join(attrs)
