"""Whom a token is issued to: what every grant hands Authlib as its "user".

Authlib passes one object from a grant to the token generator and to ``save_token``; ours says
who the token is for and which grant (the refresh-token family, the ``sid`` claim) it belongs
to, which resources the grant and this token are for (RFC 8707, ``resource_indicators``), and
carries what an ID token repeats of the browser login (OpenID Connect Core §2, §12.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.models import User, new_id


@dataclass(frozen=True)
class Principal:
    """The subject of a token request and the grant its tokens belong to."""

    user: User | None
    grant_id: str
    auth_time: float | None = None
    #: the browser login session (``LoginSession.sid``), the ID token's ``sid``: only a grant
    #: made through the authorization endpoint has one, and only such a grant gets ID tokens
    session_id: str | None = None
    #: the authorization request's ``nonce`` (OpenID Connect Core §3.1.2.1), for the code's
    #: ID token only: a refresh's carries none (§12.2)
    nonce: str | None = None
    #: the resources the grant is for, as stored with it (None: none named, the default
    #: audience)
    resources: tuple[str, ...] | None = None
    #: this token's audience, within the grant's resources; ``()``: the default audience
    audience: tuple[str, ...] = ()
    #: the RFC 7638 thumbprint of the DPoP key this token request proved (RFC 9449): the
    #: access token is bound to it (``cnf.jkt``); None: a bearer token
    jkt: str | None = None

    @classmethod
    def new(
        cls,
        user: User | None,
        auth_time: float | None = None,
        session_id: str | None = None,
        resources: tuple[str, ...] | None = None,
    ) -> Principal:
        """The principal of a new grant (a new family), its tokens for all its ``resources``."""
        return cls(
            user,
            new_id(),
            auth_time,
            session_id=session_id,
            resources=resources,
            audience=resources or (),
        )
