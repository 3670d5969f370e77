"""Ending browser sessions: RP-Initiated Logout (``gateway.issuer.logout``) and the consent
page's "Not you?" (``gateway.issuer.authorize``).

An ended session's row says so (``ended_at``): every replica then refuses the session, even
from a replayed copy of the old cookie. With ``sessions.logout_revokes_tokens`` the grants
made in those sessions are revoked in the same transaction (``Revoker``: durable before the
answer), so the tokens the clients hold end with the login.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.introspect.revocation import RevocationEntry
from gateway.introspect.revoker import Revoker
from gateway.issuer.session import Sessions
from gateway.models import BrowserSession, Grant


class SignOut:
    """``revokes_tokens``: ``sessions.logout_revokes_tokens``."""

    def __init__(self, revoker: Revoker, revokes_tokens: bool) -> None:
        self.revoker = revoker
        self.revokes_tokens = revokes_tokens

    def end(self, sids: list[str], user_id: str | None = None) -> None:
        """End the browser sessions ``sids`` (only those of ``user_id``, if given), and with
        ``revokes_tokens`` their grants, in one transaction committed before the answer."""

        def end(db: Session) -> list[RevocationEntry]:
            ended = sids
            if user_id is not None:
                ended = list(
                    db.scalars(
                        sa.select(BrowserSession.id).where(
                            BrowserSession.id.in_(sids), BrowserSession.user_id == user_id
                        )
                    )
                )
            Sessions.end(db, ended)
            if not (self.revokes_tokens and ended):
                return []
            grant_ids = db.scalars(
                sa.select(Grant.id).where(Grant.session_id.in_(ended), Grant.revoked_at.is_(None))
            ).all()
            return self.revoker.grants(db, grant_ids)

        self.revoker.revoke(end)
