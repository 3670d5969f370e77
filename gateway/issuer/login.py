"""Checking a user's password, for the login form and the password grant alike.

One door for both, so neither can be a cheaper way to guess: the throttle decides first
(``gateway.throttle``, raising ``TooManyAttempts``), the password is then verified on the
bounded pool (``gateway.passwords``, raising ``PasswordsBusy`` when its queue is full, which
counts as no attempt), and an unknown user costs what a wrong password costs (RFC 6749
§10.10). The login form also presents the browser's known-device cookie
(``gateway.issuer.devices``), which may spare its user the throttle's per-user delay, and is
handed a new one at each sign-in.
"""

from __future__ import annotations

from gateway.accounts import find_user, normalize_email
from gateway.issuer.devices import DeviceCodec
from gateway.issuer.oauth_request import MAX_CREDENTIAL_LENGTH
from gateway.models import User
from gateway.passwords import PasswordPool
from gateway.storage import Storage
from gateway.throttle import LoginThrottle


class PasswordCheck:
    def __init__(
        self,
        storage: Storage,
        throttle: LoginThrottle,
        passwords: PasswordPool,
        devices: DeviceCodec,
    ) -> None:
        self.storage = storage
        self.throttle = throttle
        self.passwords = passwords
        self.devices = devices

    def check(
        self, email: str, password: str, client_addr: str, device_cookie: str | None = None
    ) -> User | None:
        """The user when the password matches, else None, in about the same time either way;
        raises ``TooManyAttempts`` when the throttle refuses the attempt, and ``PasswordsBusy``
        when the password pool's queue is full. ``device_cookie``: the login form's
        known-device cookie as the browser sent it, if any (only a valid one counts; the
        password grant never has one)."""
        device = self.devices.loads(device_cookie)
        attempt = self.throttle.admit(normalize_email(email), client_addr, device=device)
        user = None
        if len(email) <= MAX_CREDENTIAL_LENGTH and len(password) <= MAX_CREDENTIAL_LENGTH:
            with self.storage.session() as session:
                user = find_user(session, email)
        if (
            not self.passwords.verify(user.password_hash if user else None, password)
            or user is None
        ):
            self.throttle.failed(attempt)
            return None
        self.throttle.succeeded(attempt)
        return user

    def device_cookie_header(self, user: User) -> str:
        """``Set-Cookie`` for a new known device of ``user``, who just signed in with it (a new
        one each sign-in: another user's cookie, or an old one of this user's, is replaced)."""
        return self.devices.cookie_header(self.throttle.user_key(user.email))
