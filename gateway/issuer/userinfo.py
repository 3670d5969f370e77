"""The issuer's own protected resources: OpenID Connect UserInfo (Core §5.3) and ``/oauth/me``.

Both are one resource behind two doors: ``signed_in_user`` checks the bearer token as the proxy
does (RFC 6750 §2.1, the ``Authorization`` header only; the in-memory ``BearerValidator``, so
an ID token, whose ``typ`` is not ``at+jwt``, never passes) and reads the user once; each view
only shapes the answer. Errors are the proxy's: 401 ``invalid_token`` or 403
``insufficient_scope`` with ``WWW-Authenticate``, rendered by the app's error handler.
"""

from __future__ import annotations

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response

from gateway.bearer import credentials
from gateway.errors import InsufficientScope, InvalidToken
from gateway.introspect.validator import BearerValidator
from gateway.issuer.idtoken import user_claims
from gateway.issuer.server import NO_STORE
from gateway.models import User
from gateway.storage import Storage


class UserInfoEndpoint:
    """``audience``: the access tokens' ``aud`` (``audience`` in the config), as at the proxy."""

    def __init__(self, validator: BearerValidator, audience: str, storage: Storage) -> None:
        self.validator = validator
        self.audience = audience
        self.storage = storage

    async def signed_in_user(self, http: HTTPRequest, scope: str) -> tuple[User, frozenset[str]]:
        """The user of the request's access token and the token's scopes, if it has ``scope``."""
        _, token = credentials(http.headers.getlist("authorization"), dpop=False)
        access = self.validator.validate(token, self.audience)
        if scope not in access.scopes:
            raise InsufficientScope(scope)
        if not access.is_user_token:  # a client's own token (client_credentials): no user
            raise InvalidToken("not a user token")

        def load() -> User | None:
            with self.storage.session() as session:
                return session.scalar(sa.select(User).where(User.id == access.sub))

        user = await run_in_threadpool(load)
        if user is None:  # deleted since
            raise InvalidToken("unknown user")
        return user, access.scopes

    async def userinfo(self, http: HTTPRequest) -> Response:
        """§5.3.2: ``sub``, and the claims the token's scopes release (§5.4)."""
        user, scopes = await self.signed_in_user(http, "openid")
        return JSONResponse(user_claims(user, scopes), headers=dict(NO_STORE))

    async def me(self, http: HTTPRequest) -> Response:
        """The product's first resource: ``@require_oauth('profile')`` → ``{"id", "email"}``."""
        user, _ = await self.signed_in_user(http, "profile")
        return JSONResponse({"id": user.subject, "email": user.email}, headers=dict(NO_STORE))
