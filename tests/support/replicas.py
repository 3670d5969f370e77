"""Two or more ``gateway serve`` replicas driven at once: their clients and tokens, a
proxied request, and calls released together from threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.live import (
    PASSWORD,
    LiveGateway,
)

SCOPE = "orders:read"


def proxied(gateway: LiveGateway, token: str) -> int:
    response = httpx.get(
        f"{gateway.base_url}/api/orders", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls in threads released together, as two clients hitting two replicas."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def client_of(gateway: LiveGateway, *grants: str, **extra: Any) -> dict[str, Any]:
    return gateway.create_client("app", grant_types=grants, scope=SCOPE, **extra)


def password_token(gateway: LiveGateway, client: dict[str, Any], email: str) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway.base_url}/oauth/token",
        data={"grant_type": "password", "username": email, "password": PASSWORD, "scope": SCOPE},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
