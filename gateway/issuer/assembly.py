"""The issuer, assembled from the gateway's long-lived parts: Authlib's server with the grants
bound to what each uses, and every endpoint of the authorization server given exactly its
collaborators."""

from __future__ import annotations

from starlette.routing import Route

from gateway.issuer.authorization_request import AuthorizationRequestCheck
from gateway.issuer.authorize import AuthorizationEndpoint
from gateway.issuer.client_assertions import ClientAssertions
from gateway.issuer.client_documents import MetadataDocumentClients
from gateway.issuer.client_keys import ClientKeys
from gateway.issuer.discovery import JWKSEndpoint, MetadataEndpoint
from gateway.issuer.dpop_tokens import TokenRequestProof
from gateway.issuer.grants import (
    PKCE,
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    PasswordGrant,
    RefreshTokenGrant,
)
from gateway.issuer.logout import LogoutEndpoint
from gateway.issuer.oauth_request import RequestReader
from gateway.issuer.par import PushedAuthorization, PushedRequests
from gateway.issuer.records import ClientLookup
from gateway.issuer.registration import RegistrationEndpoint
from gateway.issuer.resource_indicators import ResourceIndicators
from gateway.issuer.rotation import RefreshRotation
from gateway.issuer.server import Server
from gateway.issuer.session import SessionCodec, Sessions
from gateway.issuer.signout import SignOut
from gateway.issuer.token_endpoints import IntrospectionEndpoint, RevocationEndpoint, TokenEndpoint
from gateway.issuer.tokens import TokenGenerator, TokenStore
from gateway.issuer.userinfo import ME, USERINFO, UserInfoEndpoint
from gateway.keys import session_secret
from gateway.resource_metadata import ResourceMetadataEndpoint
from gateway.resources import METADATA_PREFIX, registrable_scopes
from gateway.runtime import Gateway


def issuer_routes(gateway: Gateway) -> list[Route]:
    """The issuer, assembled: Authlib's server with the grants bound to what each uses, and
    the endpoints, each given exactly its collaborators."""
    config, tokens = gateway.config, gateway.config.tokens
    storage, revoker, keyring = gateway.storage, gateway.revoker, gateway.keyring
    registered_scopes = registrable_scopes(config)
    stored = clients = ClientLookup(storage, registered_scopes)
    if config.registration.metadata_documents:
        clients = MetadataDocumentClients.from_config(config, storage)
    indicators = ResourceIndicators(gateway.resources, config.audience)
    assertions = ClientAssertions(
        storage, ClientKeys.from_config(config), config.issuer, tokens.leeway
    )
    server = Server(clients, TokenStore(storage, revoker, tokens.refresh_token_ttl), assertions)
    server.register_token_generator(
        "default", TokenGenerator(keyring, config.issuer, config.audience, tokens.access_token_ttl)
    )
    code_grant = AuthorizationCodeGrant.bound(
        storage, revoker, tokens.authorization_code_ttl, indicators
    )
    server.register_grant(code_grant, [PKCE(required=True)])
    server.register_grant(PasswordGrant.bound(gateway.password_check, indicators))
    rotation = RefreshRotation(
        storage, revoker, config.keys_dir, tokens.rotate_refresh_tokens, tokens.refresh_reuse_grace
    )
    server.register_grant(RefreshTokenGrant.bound(rotation, indicators))
    server.register_grant(ClientCredentialsGrant.bound(storage, indicators))
    reader = RequestReader(config.issuer, gateway.forwarded)
    secure = config.issuer.startswith("https://")
    codec = SessionCodec(session_secret(config.keys_dir), secure, config.sessions.lifetime)
    sessions = Sessions(storage, config.sessions.lifetime, config.sessions.idle_timeout)
    sign_out = SignOut(revoker, config.sessions.logout_revokes_tokens)
    pushed = PushedAuthorization(
        server,
        reader,
        PushedRequests(storage, config.par.request_lifetime),
        AuthorizationRequestCheck(server),
        config.par.required,
        TokenRequestProof(gateway.dpop, f"{config.issuer.rstrip('/')}/oauth/par"),
    )
    authorization = AuthorizationEndpoint(
        server,
        reader,
        config.issuer,
        codec,
        sessions,
        sign_out,
        gateway.password_check,
        storage,
        config.scopes.descriptions,
        indicators,
        pushed,
    )
    # logout fetches no metadata document: such clients register no logout redirect URIs
    logout = LogoutEndpoint(reader, stored, config.issuer, keyring, codec, sessions, sign_out)
    token_url = config.issuer.rstrip("/") + "/oauth/token"  # as discovery publishes it
    token = TokenEndpoint(
        server, reader, gateway.metrics, TokenRequestProof(gateway.dpop, token_url)
    )
    revocation = RevocationEndpoint(server, reader, gateway.validator, revoker, storage)
    introspection = IntrospectionEndpoint(server, reader, gateway.validator, storage, config.issuer)
    metadata = MetadataEndpoint(
        config.issuer,
        keyring,
        storage,
        gateway.resources.scopes,
        config.registration,
        registered_scopes,
        config.par,
    )
    userinfo = UserInfoEndpoint(
        gateway.validator, config.audience, storage, gateway.dpop, config.issuer
    )
    # RFC 9728: every method reaches the endpoint, which answers 405 itself
    resource_metadata = ResourceMetadataEndpoint(gateway.resources, config.issuer)
    registration = RegistrationEndpoint(
        config, storage, revoker, gateway.forwarded, registered_scopes
    )
    return [
        Route(METADATA_PREFIX, resource_metadata),
        Route(METADATA_PREFIX + "/{rest:path}", resource_metadata),
        Route("/.well-known/oauth-authorization-server", metadata.metadata, methods=["GET"]),
        Route("/.well-known/openid-configuration", metadata.openid_configuration, methods=["GET"]),
        Route("/.well-known/jwks.json", JWKSEndpoint(keyring).jwks, methods=["GET"]),
        Route("/oauth/authorize", authorization.authorize, methods=["GET", "POST"]),
        Route("/oauth/logout", logout.logout, methods=["GET", "POST"]),
        Route("/oauth/token", token.token, methods=["POST"]),
        Route("/oauth/par", pushed.push, methods=["POST"]),
        Route("/oauth/revoke", revocation.revoke, methods=["POST"]),
        Route("/oauth/introspect", introspection.introspect, methods=["POST"]),
        Route(USERINFO, userinfo.userinfo, methods=["GET", "POST"]),
        Route(ME, userinfo.me, methods=["GET"]),
        *registration.routes(),
    ]
