"""Password verification (``gateway/passwords.py``).

RFC 6749 §10.10 / the issue's rule 3: an unknown user costs what a wrong password costs.
Timing is not asserted (benchmarks measure speed, tests do not); the work is: exactly one
Argon2 verification on either path, against a hash made with the same parameters.

Verifications run on a bounded pool of their own (``[passwords]``): past ``max_concurrent``
running and ``max_queued`` waiting, the token endpoint and the login page answer 503
``temporarily_unavailable`` with ``Retry-After`` at once, and every other request keeps its
answer. The flood through a real server is in ``tests/test_passwords_flood.py``."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from gateway import passwords
from gateway.app import GatewayApp
from gateway.config import Config, PasswordsConfig, load_config
from gateway.errors import ConfigError
from gateway.models import LoginFailure, User
from gateway.passwords import PasswordPool
from tests.support.app import Registered
from tests.support.issuer import (
    authorize_url,
    csrf_token,
    oauth_error,
    password_grant,
    running,
    token_request,
    tokens,
    wait_for,
)


class GatedHasher(PasswordHasher):
    """Argon2id whose verifications wait until ``gate`` is set: a pool kept busy at will."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.gate = threading.Event()

    def verify(self, hash: Any, password: Any) -> bool:
        self.gate.wait(10)
        return super().verify(hash, password)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedHasher]:
    hasher = GatedHasher()
    monkeypatch.setattr(passwords, "hashing", passwords.Hashing(hasher))
    yield hasher
    hasher.gate.set()


def with_passwords(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, passwords=PasswordsConfig(**changes))


@pytest.fixture
def busy(
    config: Config, user: User, gated: GatedHasher
) -> Iterator[tuple[TestClient, PasswordPool]]:
    """An app with one verification thread and one place in the queue, both taken."""
    with running(with_passwords(config, max_concurrent=1, max_queued=1)) as client:
        gateway = client.app.gateway  # type: ignore[attr-defined]
        pool: PasswordPool = gateway.passwords
        waiting = [
            threading.Thread(
                target=gateway.password_check.check, args=(user.email, "guess", f"10.0.0.{i}")
            )
            for i in range(2)
        ]
        for thread in waiting:
            thread.start()
        wait_for(lambda: pool.admitted == 2)
        yield client, pool
        gated.gate.set()
        for thread in waiting:
            thread.join(10)


def test_past_the_queue_the_token_endpoint_answers_503(busy, confidential: Registered) -> None:
    client, pool = busy
    response = password_grant(client, confidential)
    body = oauth_error(response, 503, "temporarily_unavailable")
    assert body["error_description"]
    assert response.headers["retry-after"] == "1"
    assert response.headers["cache-control"] == "no-store"
    assert pool.admitted == 2  # refused, not queued


def test_refusals_are_counted(busy, confidential: Registered) -> None:
    client, _ = busy
    for _ in range(3):
        oauth_error(password_grant(client, confidential), 503, "temporarily_unavailable")
    metrics = client.get("/metrics").text
    assert "gateway_password_pool_refusals_total 3.0" in metrics
    assert "gateway_password_verifications 2.0" in metrics  # running and waiting, admitted


def test_an_unknown_user_is_refused_the_same(busy, confidential: Registered) -> None:
    client, _ = busy
    known = password_grant(client, confidential)
    unknown = password_grant(client, confidential, email="nobody@example.com")
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)


def test_past_the_queue_the_login_page_answers_503(busy, confidential: Registered) -> None:
    client, _ = busy
    url = authorize_url(confidential)
    page = client.get(url)
    form = {
        "action": "login",
        "email": "alice@example.com",
        "password": "correct horse battery staple",
        "csrf_token": csrf_token(page),
    }
    response = client.post(url, data=form)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("text/html")
    assert "temporarily_unavailable" in response.text


def test_other_grants_answer_while_the_pool_is_full(busy, confidential: Registered) -> None:
    client, _ = busy
    tokens(token_request(client, confidential, grant_type="client_credentials"))


def test_a_refusal_is_not_a_failed_attempt(busy, confidential: Registered) -> None:
    """The throttle counts guesses checked; a refused request checked nothing."""
    client, _ = busy
    for _ in range(10):
        oauth_error(password_grant(client, confidential), 503, "temporarily_unavailable")
    gateway = client.app.gateway  # type: ignore[attr-defined]
    gateway.throttle.admit("alice@example.com", "testclient")  # admitted: nothing counted
    with gateway.storage.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(LoginFailure)) == 0


def test_the_pool_serves_again_once_work_drains(busy, confidential: Registered, gated) -> None:
    client, pool = busy
    gated.gate.set()
    wait_for(lambda: pool.admitted == 0)
    tokens(password_grant(client, confidential))


def test_the_threadpool_grows_by_what_password_work_may_hold(config: Config, storage) -> None:
    """Admitted verifications wait on Starlette's threadpool threads: never on its first 40."""

    async def total_tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    with running(with_passwords(config, max_concurrent=3, max_queued=5)) as client:
        assert client.portal is not None
        assert client.portal.call(total_tokens) == 40 + 3 + 5


def test_the_pool_starts_on_first_use_without_a_lifespan() -> None:
    """The CLI and tests drive ``PasswordCheck.check`` without the app's lifespan."""
    pool = PasswordPool(1, 0)
    hashed = passwords.hash_password("a password")
    assert pool.verify(hashed, "a password")
    assert not pool.verify(None, "a password")
    pool.shutdown()
    assert pool.admitted == 0


# --- [passwords] in the config file -----------------------------------------------------------


def test_defaults_follow_the_cpu_count() -> None:
    defaults = PasswordsConfig()
    assert defaults.max_concurrent == (os.cpu_count() or 1)
    assert defaults.queue_bound == 4 * defaults.max_concurrent


def test_values_from_the_file(tmp_path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[passwords]\nmax_concurrent = 3\nmax_queued = 0\n")
    loaded = load_config(path).passwords
    assert (loaded.max_concurrent, loaded.queue_bound) == (3, 0)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param("max_concurrent = 0", "passwords.max_concurrent", "positive", id="zero"),
        pytest.param("max_queued = -1", "passwords.max_queued", "negative", id="negative"),
        pytest.param("max_concurrent = 1.5", "passwords.max_concurrent", "integer", id="float"),
        pytest.param("queue = 4", "passwords.queue", "unknown key", id="unknown"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text: str, key: str, problem: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[passwords]\n{text}\n")
    with pytest.raises(ConfigError, match=problem) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: {key}: ")


class CountingHasher(PasswordHasher):
    calls = 0

    def verify(self, hash: Any, password: Any) -> bool:
        type(self).calls += 1
        return super().verify(hash, password)


@pytest.mark.parametrize("email", ["alice@example.com", "nobody@example.com"])
def test_one_argon2_verification_whether_or_not_the_user_exists(
    app: GatewayApp, user: User, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "hashing", passwords.Hashing(hasher))
    CountingHasher.calls = 0

    assert app.gateway.password_check.check(email, "not the password", "10.0.0.1") is None
    assert CountingHasher.calls == 1
