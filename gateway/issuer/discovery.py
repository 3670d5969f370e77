"""What a client learns before its first request: authorization server metadata (RFC 8414),
OpenID Connect Discovery 1.0 built from it, and the JWKS (RFC 7517) that verifies our tokens.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response

from gateway.config import GRANT_TYPES, PROOF_ALGORITHMS, ParConfig, RegistrationConfig
from gateway.issuer.clientauth import CLIENT_AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS
from gateway.issuer.idtoken import CLAIMS_SUPPORTED, OIDC_SCOPES
from gateway.issuer.prompt import PROMPT_VALUES, RESPONSE_MODES
from gateway.keys import KeyRing
from gateway.models import Client
from gateway.storage import Storage


def _cached(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})


class MetadataEndpoint:
    """``/.well-known/oauth-authorization-server`` and ``/.well-known/openid-configuration``.
    ``scopes_supported`` is every client's scopes, the routes' and OpenID Connect's, read at
    each request: a client registered since is in it. With dynamic registration on, the
    ``registration_endpoint`` (RFC 8414 §2), and every scope a registered client may ask for
    (``registered_scopes``) is supported too."""

    def __init__(
        self,
        issuer: str,
        keyring: KeyRing,
        storage: Storage,
        resource_scopes: frozenset[str],
        registration: RegistrationConfig | None = None,
        registered_scopes: frozenset[str] = frozenset(),
        par: ParConfig | None = None,
    ) -> None:
        self.issuer = issuer
        #: ``[registration] metadata_documents``: URL client_ids name metadata documents
        self.metadata_documents = registration is not None and registration.metadata_documents
        self.keyring = keyring
        self.storage = storage
        #: every scope the routes (and their MCP tools) name
        self.resource_scopes = resource_scopes
        self.dynamic = registration is not None and registration.dynamic != "off"
        self.registered_scopes = registered_scopes if self.dynamic else frozenset()
        #: RFC 9126 §5: every authorization request must be pushed
        self.par_required = par is not None and par.required

    async def metadata(self, http: HTTPRequest) -> Response:
        return _cached(await run_in_threadpool(self._metadata))

    async def openid_configuration(self, http: HTTPRequest) -> Response:
        """OpenID Connect Discovery 1.0 §3: RFC 8414's document, and what OIDC adds to it."""
        body = await run_in_threadpool(self._metadata)
        issuer = self.issuer.rstrip("/")
        algorithms = self.keyring.algorithms
        body.update(
            {
                "userinfo_endpoint": f"{issuer}/oauth/userinfo",
                # RP-Initiated Logout 1.0 §2.1
                "end_session_endpoint": f"{issuer}/oauth/logout",
                "id_token_signing_alg_values_supported": algorithms,
                "subject_types_supported": ["public"],
                "claims_supported": CLAIMS_SUPPORTED,
                # OIDC Core §3.1.2.1; select_account is refused: one account per session
                "prompt_values_supported": list(PROMPT_VALUES),
                "claims_parameter_supported": False,
                "request_parameter_supported": False,
                # Discovery §3: omitted, it would mean true
                "request_uri_parameter_supported": False,
            }
        )
        return _cached(body)

    def _metadata(self) -> dict[str, Any]:
        """RFC 8414 §2, the one source of both discovery documents."""
        issuer = self.issuer.rstrip("/")
        metadata = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "scopes_supported": self._scopes_supported(),
            "response_types_supported": ["code"],
            "response_modes_supported": list(RESPONSE_MODES),
            "grant_types_supported": list(GRANT_TYPES),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_AUTH_METHODS,
            # private_key_jwt's assertions (RFC 8414 §2; RFC 7523)
            "token_endpoint_auth_signing_alg_values_supported": list(PROOF_ALGORITHMS),
            "revocation_endpoint_auth_signing_alg_values_supported": list(PROOF_ALGORITHMS),
            "introspection_endpoint_auth_signing_alg_values_supported": list(PROOF_ALGORITHMS),
            "authorization_response_iss_parameter_supported": True,
            "access_token_signing_alg_values_supported": self.keyring.algorithms,
            # RFC 9126 §5
            "pushed_authorization_request_endpoint": f"{issuer}/oauth/par",
            "require_pushed_authorization_requests": self.par_required,
            # RFC 9449 §5.1: the algorithms a DPoP proof may use
            "dpop_signing_alg_values_supported": list(PROOF_ALGORITHMS),
        }
        if self.dynamic:
            metadata["registration_endpoint"] = f"{issuer}/oauth/register"
        if self.metadata_documents:  # draft-ietf-oauth-client-id-metadata-document §5
            metadata["client_id_metadata_document_supported"] = True
        return metadata

    def _scopes_supported(self) -> list[str]:
        with self.storage.session() as session:
            client_scopes = session.scalars(sa.select(Client.scope)).all()
        scopes = {s for value in client_scopes for s in value.split()} | OIDC_SCOPES
        return sorted(scopes | self.resource_scopes | self.registered_scopes)


class JWKSEndpoint:
    """``/.well-known/jwks.json``: the key ring's public keys, those not yet signing included
    (a rotated key is published before it signs; a retired one is gone)."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    async def jwks(self, http: HTTPRequest) -> Response:
        # short cache: a rotated key must reach verifiers before it signs (activation_delay)
        return Response(
            json.dumps(self.keyring.jwks()),
            headers={"Cache-Control": "public, max-age=60"},
            media_type="application/jwk-set+json",
        )
