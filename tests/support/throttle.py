"""The login throttle's tests' helpers: a client from a given address, failures aged instead
of waited for, and the Retry-After of a throttled password grant."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.app import GatewayApp
from gateway.models import LoginFailure
from gateway.storage import Storage
from tests.support.app import ISSUER
from tests.support.issuer import oauth_error

WRONG = "not the password"

failures = cast(sa.Table, LoginFailure.__table__)


def from_(app: GatewayApp, address: str, **kwargs: Any) -> TestClient:
    return TestClient(app, base_url=ISSUER, client=(address, 4000), **kwargs)


def age(storage: Storage, seconds: float) -> None:
    """As if ``seconds`` had passed since every failure so far."""
    with storage.engine.begin() as conn:
        conn.execute(
            failures.update().values(
                at=failures.c.at - seconds, expires_at=failures.c.expires_at - seconds
            )
        )


def throttled(response: Any) -> int:
    """The Retry-After of a throttled password grant (the same invalid_grant as a bad one)."""
    body = oauth_error(response, 400, "invalid_grant")
    assert "Too many failed attempts" in body["error_description"]
    return int(response.headers["retry-after"])
