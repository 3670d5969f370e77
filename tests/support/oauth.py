"""What a third party does with the live gateway: Authlib's httpx client for the grants, the
login and consent forms over plain HTTP, PyJWT's ``PyJWKClient`` for offline verification."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urljoin

import httpx
import jwt
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from tests.support.live import PASSWORD, LiveGateway, parse_page, query_of

#: RFC 9068 §2.2 and this gateway's additions, for tokens issued to a user / to a client alone
#: (a user's has ``email`` too when its scopes include ``email`` or ``profile``, §6)
CLIENT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid")
USER_CLAIMS = (*CLIENT_CLAIMS, "auth_time")


def oauth_client(client: dict[str, Any], **kwargs: Any) -> OAuth2Client:
    """Authlib's client for a client registered with ``gateway client create --json``."""
    secret = client.get("client_secret")
    return OAuth2Client(
        client["client_id"],
        secret,
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        revocation_endpoint_auth_method="client_secret_basic" if secret else "none",
        timeout=10.0,
        **kwargs,
    )


def password_token(
    gateway: LiveGateway, client: dict[str, Any], email: str, scope: str = "orders:read"
) -> dict[str, Any]:
    with oauth_client(client, scope=scope) as oauth:
        token: dict[str, Any] = oauth.fetch_token(
            gateway.metadata()["token_endpoint"], username=email, password=PASSWORD
        )
    return token


def introspect(gateway: LiveGateway, resource_server: dict[str, Any], token: str) -> dict[str, Any]:
    """RFC 7662 through Authlib's client, authenticated as a resource server."""
    with oauth_client(resource_server) as rs:
        response = rs.introspect_token(gateway.metadata()["introspection_endpoint"], token=token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def verify_offline(
    gateway: LiveGateway, token: str, required: tuple[str, ...], jwks: jwt.PyJWKClient | None = None
) -> dict[str, Any]:
    """Verify ``token`` as a third party would: keys from the metadata's ``jwks_uri`` only."""
    metadata = gateway.metadata()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert header["alg"] in metadata["access_token_signing_alg_values_supported"]
    jwks = jwks or jwt.PyJWKClient(metadata["jwks_uri"], cache_jwk_set=False)
    key = jwks.get_signing_key_from_jwt(token)
    assert (key.key_id, key.algorithm_name) == (header["kid"], header["alg"])
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=metadata["access_token_signing_alg_values_supported"],
        audience=metadata["issuer"],
        issuer=metadata["issuer"],
        options={"require": list(required)},
    )
    assert isinstance(claims["sub"], str) and claims["sub"]
    assert claims["iat"] <= time.time() + 1 < claims["exp"]
    return claims


class AuthorizationFlow:
    """The authorization code flow with PKCE, with the user's side driven over HTTP."""

    def __init__(
        self,
        gateway: LiveGateway,
        client: dict[str, Any],
        redirect_uri: str,
        scope: str,
        **params: str,
    ) -> None:
        self.gateway = gateway
        self.metadata = gateway.metadata()
        self.oauth = oauth_client(
            client, scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256"
        )
        self.verifier = generate_token(64)
        self.url, self.state = self.oauth.create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=self.verifier, **params
        )
        # a user agent: keeps the session cookie, stops at every redirect so each is checked
        self.browser = httpx.Client(follow_redirects=False, timeout=10.0)

    def __enter__(self) -> AuthorizationFlow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.browser.close()
        self.oauth.close()

    def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        """Submit the login form; return the consent page it leads to."""
        page = self.browser.get(self.url)
        assert page.status_code == 200, page.text
        form = parse_page(page.text).forms[0]
        assert {"email", "password"} <= set(form.inputs)
        posted = self.browser.post(
            urljoin(self.url, form.action),
            data={**form.hidden, "email": email, "password": password},
        )
        assert posted.status_code == 303, posted.text
        consent = self.browser.get(urljoin(self.url, posted.headers["location"]))
        assert consent.status_code == 200, consent.text
        return consent

    def decide(self, consent: httpx.Response, action: str) -> dict[str, str]:
        """Press Allow or Deny; return the query of the redirect back to the client."""
        forms = parse_page(consent.text).forms
        decision = next(f for f in forms if ("action", action) in f.buttons)
        answer = self.browser.post(
            urljoin(self.url, decision.action), data={**decision.hidden, "action": action}
        )
        assert answer.status_code == 302, answer.text
        self.location = answer.headers["location"]
        assert self.location.startswith(self.oauth.redirect_uri + "?")
        return query_of(self.location)

    def fetch_token(self) -> dict[str, Any]:
        token: dict[str, Any] = self.oauth.fetch_token(
            self.metadata["token_endpoint"],
            authorization_response=self.location,
            state=self.state,
            code_verifier=self.verifier,
        )
        return token
