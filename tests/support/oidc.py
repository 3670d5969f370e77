"""Helpers shared by the single sign-on, consent and logout tests: relying parties, the
browser session's cookie and row, and the pages' answers read like a browser reads them."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import jwt
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway import accounts
from gateway.config import Config
from gateway.issuer.session import COOKIE, LoginSession, SessionCodec
from gateway.keys import session_secret
from gateway.models import BrowserSession
from gateway.storage import Storage
from tests.support.app import ISSUER, Registered
from tests.support.issuer import (
    JWKS,
    REDIRECT_URI,
    authorize_url,
    consent,
    get_code,
    login,
    redeem,
    redirect_params,
    tokens,
)

OIDC_SCOPES = "openid profile email orders:read orders:write"
LOGGED_OUT = "http://127.0.0.1:9999/logged-out"


def relying_party(
    storage: Storage,
    name: str = "Relying party",
    *,
    scope: str = OIDC_SCOPES,
    first_party: bool = False,
    post_logout_redirect_uris: tuple[str, ...] = (LOGGED_OUT,),
) -> Registered:
    with storage.session() as session:
        new = accounts.create_client(
            session,
            name,
            [REDIRECT_URI],
            ["authorization_code", "refresh_token"],
            scope,
            "client_secret_basic",
            post_logout_redirect_uris=list(post_logout_redirect_uris),
            first_party=first_party,
        )
    return Registered(new.client.client_id, new.client_secret, new.client)


def codec(config: Config) -> SessionCodec:
    return SessionCodec(session_secret(config.keys_dir), secure=False)


def cookie_session(client: TestClient, config: Config) -> LoginSession:
    session = codec(config).loads(client.cookies.get(COOKIE))
    assert session is not None, client.cookies
    return session


def set_cookie_session(client: TestClient, config: Config, session: LoginSession) -> None:
    client.cookies.clear()
    client.cookies.set(COOKIE, codec(config).dumps(session), path="/oauth")


def session_row(storage: Storage, sid: str) -> BrowserSession | None:
    with storage.session() as db:
        return db.get(BrowserSession, sid)


def update_row(storage: Storage, sid: str, **values: Any) -> None:
    """Move a session in time (or end it) by editing its row, as time passing would."""
    with storage.session() as db:
        db.execute(sa.update(BrowserSession).where(BrowserSession.id == sid).values(**values))


def is_login_form(response: httpx.Response) -> bool:
    return response.status_code == 200 and 'name="password"' in response.text


def is_consent_page(response: httpx.Response) -> bool:
    return response.status_code == 200 and 'value="allow"' in response.text


def signed_in(client: TestClient, registered: Registered, email: str, **params: str) -> str:
    """Log in through ``registered``'s authorization request; returns its URL."""
    url = authorize_url(registered, **params)
    posted = login(client, url, email)
    assert posted.status_code == 303, posted.text
    return url


def allow(client: TestClient, url: str) -> dict[str, str]:
    """The consent page, Allow pressed: the redirect's query."""
    return redirect_params(consent(client, url))


def id_token_claims(client: TestClient, registered: Registered, code: str) -> dict[str, Any]:
    issued = redeem(client, registered, code)
    assert issued.status_code == 200, issued.text
    return decode_id_token(client, issued.json()["id_token"], registered.client_id)


def with_sessions(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, sessions=dataclasses.replace(config.sessions, **changes))


def sign_in_with_tokens(client, rp, user) -> dict:
    """Log in through ``rp`` with ``openid``: its tokens (ID token included)."""
    return tokens(redeem(client, rp, get_code(client, rp, user, scope="openid orders:read")))


def decode_id_token(client: TestClient, id_token: str, audience: str) -> dict[str, Any]:
    """Verify as a relying party would (§3.1.3.7): the served JWKS, ``typ`` JWT, our issuer,
    the client as the audience."""
    if jwt.get_unverified_header(id_token).get("typ") != "JWT":
        raise jwt.InvalidTokenError("not an ID token")
    jwks = client.get(JWKS).json()
    kid = jwt.get_unverified_header(id_token)["kid"]
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == kid]
    return jwt.decode(
        id_token,
        key=jwt.PyJWK(jwk),
        algorithms=[jwk["alg"]],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "auth_time", "at_hash", "sid"]},
    )
