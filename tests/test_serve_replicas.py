"""Two real ``gateway serve`` replicas sharing one database and one ``keys/`` folder.

Runs on SQLite (one file, revocations by polling) and on PostgreSQL (LISTEN/NOTIFY) alike.
The races are driven at both replicas at once: the database, not a process, decides them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwt import get_unverified_header

from gateway.demo.echo import echo_upstream_thread
from tests.support.live import (
    LiveGateway,
    RedirectTarget,
    free_port,
    running_gateway,
    wait_until,
)
from tests.support.oauth import AuthorizationFlow, oauth_client
from tests.support.replicas import SCOPE, at_once, client_of, password_token, proxied

pytestmark = [pytest.mark.live, pytest.mark.scale]


@pytest.fixture
def upstream() -> Iterator[str]:
    with echo_upstream_thread() as url:
        yield url


@pytest.fixture
def replicas(
    tmp_path: Path, database_url: str, upstream: str
) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    """A and B: one issuer, one database, one keys folder; each proxies /api to the upstream.

    The issuer's URL is A's (a load balancer would stand there): metadata points at A."""
    port_a = free_port()
    issuer = f"http://127.0.0.1:{port_a}"
    shared: dict[str, Any] = {
        "issuer": issuer,
        "keys_dir": tmp_path / "keys",
        "extra_toml": (
            f'[[routes]]\npath = "/api"\nupstream = "{upstream}"\nscopes = ["{SCOPE}"]\n'
        ),
    }
    with (
        running_gateway(tmp_path / "a", database_url, port=port_a, **shared) as a,
        running_gateway(tmp_path / "b", database_url, **shared) as b,
    ):
        yield a, b


def test_a_token_revoked_at_a_is_refused_by_b(replicas: tuple[LiveGateway, LiveGateway]) -> None:
    a, b = replicas
    client = client_of(a, "client_credentials")
    auth = (client["client_id"], client["client_secret"])
    token = httpx.post(
        f"{a.base_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=auth
    ).json()["access_token"]
    assert proxied(b, token) == 200

    revoked = httpx.post(f"{a.base_url}/oauth/revoke", data={"token": token}, auth=auth)
    assert revoked.status_code == 200
    assert proxied(a, token) == 401  # the replica that revoked: at once
    wait_until(lambda: proxied(b, token) == 401, "replica B to refuse the revoked token", 5)


def test_cli_user_revocation_reaches_both_replicas(
    replicas: tuple[LiveGateway, LiveGateway],
) -> None:
    a, b = replicas
    email = a.create_user("carol@example.com")
    client = client_of(a, "password", "refresh_token")
    tokens = [password_token(a, client, email), password_token(b, client, email)]
    assert all(proxied(g, t["access_token"]) == 200 for g in (a, b) for t in tokens)

    a.cli("token", "revoke", "--user", email)

    for gateway in (a, b):
        for token in tokens:
            wait_until(
                lambda g=gateway, t=token: proxied(g, t["access_token"]) == 401,
                f"{gateway.base_url} to refuse the user's token",
                5,
            )
    refreshed = httpx.post(
        f"{b.base_url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens[0]["refresh_token"]},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert refreshed.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_refreshes_at_both_replicas_exactly_one_wins(
    replicas: tuple[LiveGateway, LiveGateway], round_: int
) -> None:
    a, b = replicas
    email = a.create_user(f"dave{round_}@example.com")
    client = client_of(a, "password", "refresh_token")
    auth = (client["client_id"], client["client_secret"])
    first = password_token(a, client, email)
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}

    answers = at_once(
        lambda: httpx.post(f"{a.base_url}/oauth/token", data=form, auth=auth, timeout=30),
        lambda: httpx.post(f"{b.base_url}/oauth/token", data=form, auth=auth, timeout=30),
    )

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 400], [r.text for r in answers]
    loser = next(r for r in answers if r.status_code == 400)
    assert loser.json()["error"] == "invalid_grant"
    # the second presentation is reuse (RFC 9700 §4.14.2): the whole grant is revoked,
    # the winner's new tokens included
    winner = next(r for r in answers if r.status_code == 200).json()
    again = httpx.post(
        f"{b.base_url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]},
        auth=auth,
    )
    assert again.json()["error"] == "invalid_grant"
    for gateway in (a, b):
        wait_until(
            lambda g=gateway: proxied(g, winner["access_token"]) == 401,
            "the winner's access token to be refused",
            5,
        )


def test_a_code_redeemed_at_both_replicas_at_once_succeeds_once(
    replicas: tuple[LiveGateway, LiveGateway],
) -> None:
    a, b = replicas
    email = a.create_user("erin@example.com")
    with RedirectTarget() as target:
        client = client_of(
            a, "authorization_code", "refresh_token", redirect_uris=(target.redirect_uri,)
        )
        with AuthorizationFlow(a, client, target.redirect_uri, SCOPE) as flow:
            params = flow.decide(flow.login(email), "allow")
            form = {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": target.redirect_uri,
                "code_verifier": flow.verifier,
            }
            auth = (client["client_id"], client["client_secret"])
            answers = at_once(
                lambda: httpx.post(f"{a.base_url}/oauth/token", data=form, auth=auth, timeout=30),
                lambda: httpx.post(f"{b.base_url}/oauth/token", data=form, auth=auth, timeout=30),
            )
    assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
    assert next(r for r in answers if r.status_code == 400).json()["error"] == "invalid_grant"


def client_token(gateway: LiveGateway, client: dict[str, Any]) -> str:
    with oauth_client(client) as oauth:
        token = oauth.fetch_token(
            f"{gateway.base_url}/oauth/token", grant_type="client_credentials"
        )
    return str(token["access_token"])


def test_a_key_rotated_then_retired_by_the_cli_reaches_both(
    replicas: tuple[LiveGateway, LiveGateway],
) -> None:
    a, b = replicas
    before = a.jwks_kids()
    assert b.jwks_kids() == before
    client = client_of(a, "client_credentials")
    old_token = client_token(a, client)

    a.cli("key", "rotate")

    new = wait_until(lambda: a.jwks_kids() - before, "replica A to publish the new key", 5)
    wait_until(lambda: b.jwks_kids() == a.jwks_kids(), "both replicas to serve one JWKS", 5)
    (kid,) = new
    new_tokens = [client_token(gateway, client) for gateway in (a, b)]
    for token in new_tokens:
        assert get_unverified_header(token)["kid"] == kid
        assert proxied(a, token) == proxied(b, token) == 200
    assert proxied(a, old_token) == proxied(b, old_token) == 200  # published until retired

    (old,) = before
    b.cli("key", "retire", "--", old)

    for gateway in (a, b):
        wait_until(lambda g=gateway: old not in g.jwks_kids(), "the retired key to go", 5)
        assert proxied(gateway, old_token) == 401
        assert all(proxied(gateway, token) == 200 for token in new_tokens)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_serve_with_workers_keeps_every_worker_in_sync(
    tmp_path: Path, database_url: str, upstream: str
) -> None:
    """``serve --workers 2``: two processes, each with its own caches, one listening socket."""
    route = f'[[routes]]\npath = "/api"\nupstream = "{upstream}"\nscopes = ["{SCOPE}"]\n'
    with running_gateway(
        tmp_path, database_url, extra_toml=route, serve_args=("--workers", "2")
    ) as gateway:
        assert len(children(gateway.process.pid)) >= 2
        client = client_of(gateway, "client_credentials")
        auth = (client["client_id"], client["client_secret"])
        token = httpx.post(
            f"{gateway.base_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=auth
        ).json()["access_token"]
        assert (
            httpx.post(
                f"{gateway.base_url}/oauth/revoke", data={"token": token}, auth=auth
            ).status_code
            == 200
        )

        def refused_by_every_worker() -> bool:
            # fresh connections are spread over the workers by the kernel
            return all(proxied(gateway, token) == 401 for _ in range(20))

        wait_until(refused_by_every_worker, "every worker to refuse the revoked token", 5)
