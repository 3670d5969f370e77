"""The refresh-token reuse grace at two real replicas sharing one database and ``keys/``.

Both replicas derive the successor with the shared secret, so the one that loses the rotation
hands out the very token the winner stored; the database decides whether that is allowed (the
grace, an unused successor) or reuse.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.demo.echo import echo_upstream_thread
from gateway.models import sha256
from gateway.storage import create_engine
from tests.support.live import LiveGateway, free_port, running_gateway, wait_until
from tests.support.replicas import SCOPE, at_once, client_of, password_token, proxied

pytestmark = [pytest.mark.live, pytest.mark.scale]

GRACE = 30


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    """A and B with a 30 s reuse grace: one issuer, one database, one keys folder."""
    port_a = free_port()
    with echo_upstream_thread() as upstream:
        shared: dict[str, Any] = {
            "issuer": f"http://127.0.0.1:{port_a}",
            "keys_dir": tmp_path / "keys",
            "extra_toml": (
                f"[tokens]\nrefresh_reuse_grace = {GRACE}\n"
                f'[[routes]]\npath = "/api"\nupstream = "{upstream}"\nscopes = ["{SCOPE}"]\n'
            ),
        }
        with (
            running_gateway(tmp_path / "a", database_url, port=port_a, **shared) as a,
            running_gateway(tmp_path / "b", database_url, **shared) as b,
        ):
            yield a, b


def refresh_at(gateway: LiveGateway, auth: tuple[str, str], token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    return httpx.post(f"{gateway.base_url}/oauth/token", data=form, auth=auth, timeout=30)


def family_refused(a: LiveGateway, b: LiveGateway, *access_tokens: str) -> None:
    for gateway in (a, b):
        for token in access_tokens:
            wait_until(
                lambda g=gateway, t=token: proxied(g, t) == 401,
                f"{gateway.base_url} to refuse the family's access token",
                5,
            )


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_refreshes_at_both_replicas_get_one_successor(
    replicas: tuple[LiveGateway, LiveGateway], round_: int
) -> None:
    a, b = replicas
    email = a.create_user(f"tab{round_}@example.com")
    client = client_of(a, "password", "refresh_token")
    auth = (client["client_id"], client["client_secret"])
    first = password_token(a, client, email)

    answers = at_once(
        lambda: refresh_at(a, auth, first["refresh_token"]),
        lambda: refresh_at(b, auth, first["refresh_token"]),
    )

    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    one, two = (r.json() for r in answers)
    assert one["refresh_token"] == two["refresh_token"] != first["refresh_token"]
    assert one["access_token"] != two["access_token"]
    assert all(proxied(g, t["access_token"]) == 200 for g in (a, b) for t in (one, two))
    # the one successor carries the family on, at either replica
    assert refresh_at(b, auth, one["refresh_token"]).status_code == 200
    # and now that it is used, the first token is reuse: the family is revoked
    reused = refresh_at(a, auth, first["refresh_token"])
    assert reused.json()["error"] == "invalid_grant"
    family_refused(a, b, one["access_token"], two["access_token"])


def test_past_the_grace_the_other_replica_revokes_the_family(
    replicas: tuple[LiveGateway, LiveGateway], database_url: str
) -> None:
    a, b = replicas
    email = a.create_user("late@example.com")
    client = client_of(a, "password", "refresh_token")
    auth = (client["client_id"], client["client_secret"])
    first = password_token(a, client, email)
    rotated = refresh_at(a, auth, first["refresh_token"]).json()
    again = refresh_at(b, auth, first["refresh_token"]).json()  # within the grace, at B
    assert again["refresh_token"] == rotated["refresh_token"]

    engine = create_engine(database_url)  # as if the grace had passed
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE refresh_tokens SET rotated_at = :then WHERE token_hash = :hash"),
            {"then": time.time() - GRACE - 1, "hash": sha256(first["refresh_token"])},
        )
    engine.dispose()

    late = refresh_at(b, auth, first["refresh_token"])
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    family_refused(a, b, rotated["access_token"], again["access_token"])
    assert refresh_at(a, auth, rotated["refresh_token"]).json()["error"] == "invalid_grant"
