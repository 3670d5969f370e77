"""The issuer's own protected resources: OpenID Connect UserInfo (Core §5.3) and ``/oauth/me``.

Both are one resource behind two doors: ``signed_in_user`` checks the access token as the proxy
does (``gateway.bearer``: the ``Authorization`` header only; the in-memory ``BearerValidator``,
so an ID token, whose ``typ`` is not ``at+jwt``, never passes) and reads the user once; each
view only shapes the answer. Errors are the proxy's: 401 ``invalid_token`` or 403
``insufficient_scope`` with ``WWW-Authenticate``, rendered by the app's error handler.

DPoP (RFC 9449 §7): a bound token is taken in the ``DPoP`` scheme with one proof by its key,
checked by the gateway's one ``Checker`` with ``htm`` the request's method and ``htu`` the
endpoint's URL as discovery publishes it (the issuer's, never the request's Host); sent as
``Bearer`` it is refused (§7.2), and so is a bearer token sent as ``DPoP``. Every refusal of a
bound token, or of a ``DPoP`` request, challenges in the ``DPoP`` scheme; with nonces on, a
success carries the next ``DPoP-Nonce`` as at the proxy.
"""

from __future__ import annotations

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response

from gateway.bearer import BEARER, BOUND, credentials, proven
from gateway.dpop import Checker
from gateway.dpop_challenges import DpopChallenge, DpopInsufficientScope, DpopInvalidToken
from gateway.errors import InsufficientScope, InvalidToken
from gateway.introspect.validator import AccessToken, BearerValidator
from gateway.issuer.idtoken import user_claims
from gateway.issuer.server import NO_STORE
from gateway.models import User
from gateway.storage import Storage

#: the two doors' paths, as discovery publishes them under the issuer
USERINFO = "/oauth/userinfo"
ME = "/oauth/me"


class UserInfoEndpoint:
    """``audience``: the access tokens' ``aud`` (``audience`` in the config), as at the proxy;
    ``issuer``: the public URL the paths are published under (each proof's ``htu``)."""

    def __init__(
        self,
        validator: BearerValidator,
        audience: str,
        storage: Storage,
        checker: Checker,
        issuer: str,
    ) -> None:
        self.validator = validator
        self.audience = audience
        self.storage = storage
        self.checker = checker
        base = issuer.rstrip("/")
        self.urls = {USERINFO: base + USERINFO, ME: base + ME}

    def access(self, http: HTTPRequest, path: str) -> AccessToken:
        """The request's validated token: a bearer one, or a bound one with its proof."""
        proofs = http.headers.getlist("dpop")
        scheme, token = credentials(http.headers.getlist("authorization"), proofs)
        if scheme == BEARER:
            access = self.validator.validate(token, self.audience)
            if access.jkt is not None:
                raise DpopInvalidToken(BOUND)
            return access
        return proven(
            self.validator, token, self.audience, self.checker, proofs, http.method, self.urls[path]
        )

    async def signed_in_user(
        self, http: HTTPRequest, path: str, scope: str
    ) -> tuple[User, frozenset[str], dict[str, str]]:
        """The user of the request's access token, the token's scopes if it has ``scope``,
        and the answer's headers."""
        try:
            access = self.access(http, path)
            user = await self._user(access, scope)
        except DpopChallenge as refused:
            # bearer tokens are taken too (RFC 9449 §7.1): a Bearer challenge beside, as at a
            # dpop = "allowed" route of the proxy
            refused.bearer_too = refused.status_code == 401
            raise
        headers = dict(NO_STORE)
        if access.jkt is not None and (nonce := self.checker.nonce()) is not None:
            headers["DPoP-Nonce"] = nonce  # RFC 9449 §8.2: the next one, for the next proof
        return user, access.scopes, headers

    async def _user(self, access: AccessToken, scope: str) -> User:
        """``access``'s user; refusals of a bound token in the ``DPoP`` scheme (§7.1)."""
        bound = access.jkt is not None
        if scope not in access.scopes:
            refused = InsufficientScope(scope)
            raise DpopInsufficientScope.of(refused) if bound else refused
        invalid = DpopInvalidToken if bound else InvalidToken
        if not access.is_user_token:  # a client's own token (client_credentials): no user
            raise invalid("not a user token")

        def load() -> User | None:
            with self.storage.session() as session:
                return session.scalar(sa.select(User).where(User.id == access.sub))

        user = await run_in_threadpool(load)
        if user is None:  # deleted since
            raise invalid("unknown user")
        return user

    async def userinfo(self, http: HTTPRequest) -> Response:
        """§5.3.2: ``sub``, and the claims the token's scopes release (§5.4)."""
        user, scopes, headers = await self.signed_in_user(http, USERINFO, "openid")
        return JSONResponse(user_claims(user, scopes), headers=headers)

    async def me(self, http: HTTPRequest) -> Response:
        """The product's first resource: ``@require_oauth('profile')`` → ``{"id", "email"}``."""
        user, _, headers = await self.signed_in_user(http, ME, "profile")
        return JSONResponse({"id": user.subject, "email": user.email}, headers=headers)
