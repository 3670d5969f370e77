"""A database outage under a running replica, and the recovery (PostgreSQL only).

The replica reaches PostgreSQL through ``OutageProxy``; stopping the proxy is the database host
going away (the machine's real server keeps serving the rest of the suite).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from gateway.demo.echo import echo_upstream_thread
from tests.support.live import LiveGateway, running_gateway, wait_until
from tests.support.outage_proxy import OutageProxy

pytestmark = [
    pytest.mark.live,
    pytest.mark.scale,
    pytest.mark.skipif(
        not os.environ.get("GATEWAY_TEST_DATABASE_URL"),
        reason="an outage needs a database server; CI runs this file on PostgreSQL",
    ),
]

MAX_STALENESS = 1.5


@pytest.fixture
def outage() -> Iterator[OutageProxy]:
    url = make_url(os.environ["GATEWAY_TEST_DATABASE_URL"])
    proxy = OutageProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def replica(tmp_path: Path, database_url: str, outage: OutageProxy) -> Iterator[LiveGateway]:
    host, port = outage.address
    through_proxy = make_url(database_url).set(host=host, port=port)
    with echo_upstream_thread() as upstream:
        with running_gateway(
            tmp_path,
            through_proxy.render_as_string(hide_password=False),
            revocation={"max_staleness": MAX_STALENESS},
            extra_toml=f'[[routes]]\npath = "/api"\nupstream = "{upstream}"\n',
        ) as gateway:
            yield gateway


def token_for(gateway: LiveGateway, client: dict[str, str]) -> str:
    response = httpx.post(
        f"{gateway.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def status(gateway: LiveGateway, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{gateway.base_url}{path}", headers=headers, timeout=10).status_code


def test_the_proxy_keeps_working_the_issuer_says_503_and_all_resumes(
    replica: LiveGateway, outage: OutageProxy
) -> None:
    client = replica.create_client("svc", grant_types=("client_credentials",))
    auth = (client["client_id"], client["client_secret"])
    kept, revoked = token_for(replica, client), token_for(replica, client)
    assert (
        httpx.post(
            f"{replica.base_url}/oauth/revoke", data={"token": revoked}, auth=auth
        ).status_code
        == 200
    )
    assert status(replica, "/readyz") == 200

    outage.stop()

    # the proxy validates with what it holds: keys and revocations
    assert status(replica, "/api/x", kept) == 200
    assert status(replica, "/api/x", revoked) == 401
    # the issuer cannot answer without its database: 503, in RFC 6749 shape
    answer = httpx.post(
        f"{replica.base_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=auth
    )
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"
    # a revocation that cannot be made durable is refused, never acknowledged
    refused = httpx.post(f"{replica.base_url}/oauth/revoke", data={"token": kept}, auth=auth)
    assert refused.status_code == 503
    # once the revocation data is older than max_staleness, the replica says it is unready
    wait_until(lambda: status(replica, "/readyz") == 503, "/readyz to turn unready", 10)
    assert status(replica, "/healthz") == 200

    outage.start()

    wait_until(lambda: status(replica, "/readyz") == 200, "/readyz to recover", 15)
    again = token_for(replica, client)
    assert status(replica, "/api/x", again) == 200
    assert status(replica, "/api/x", revoked) == 401
    assert (
        httpx.post(f"{replica.base_url}/oauth/revoke", data={"token": kept}, auth=auth).status_code
        == 200
    )
    assert status(replica, "/api/x", kept) == 401
