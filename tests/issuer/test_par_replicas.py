"""Pushed authorization requests across replicas (RFC 9126 §4, one use): the request is in the
database, so any replica redeems what another accepted, and of two redemptions at once exactly
one wins (on PostgreSQL with ``GATEWAY_TEST_DATABASE_URL``, else on the shared SQLite file);
and the store's rules beneath: a continuation is not redeemed again, a request is answered
once, and only our own ``request_uri`` values are looked up."""

from __future__ import annotations

import threading

import pytest

from gateway.issuer.par import PREFIX, PushedRequests, reference_of
from tests.support.issuer import consent, csrf_token, redeem, redirect_params, running, tokens
from tests.support.par import authorize_pushed, continue_at, pushed, signed_in_at
from tests.support.replicas import at_once


def test_pushed_at_one_replica_redeemed_at_another(client, config, user, confidential):
    request_uri = pushed(client, confidential, scope="orders:read")
    with running(config) as replica:
        continuation = continue_at(replica, authorize_pushed(confidential, request_uri))
        signed_in_at(replica, continuation, user.email)
        back = redirect_params(consent(replica, continuation))
    assert tokens(redeem(client, confidential, back["code"]))["scope"] == "orders:read"


def test_two_redemptions_at_two_replicas_one_wins(client, config, confidential):
    for _ in range(5):
        url = authorize_pushed(confidential, pushed(client, confidential))
        with running(config) as replica:
            answers = at_once(lambda u=url: client.get(u), lambda u=url: replica.get(u))
        assert sorted(a.status_code for a in answers) == [303, 400]


def test_of_many_concurrent_redemptions_exactly_one_wins(storage, confidential):
    requests = PushedRequests(storage, 60)
    reference = requests.push(
        confidential.client_id, {"client_id": [confidential.client_id]}
    ).removeprefix(PREFIX)
    barrier = threading.Barrier(8)
    won: list[str | None] = []

    def redeem_one() -> None:
        barrier.wait()
        won.append(requests.redeem(confidential.client_id, reference))

    threads = [threading.Thread(target=redeem_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 8
    assert len([w for w in won if w is not None]) == 1


def test_a_continuation_is_never_redeemed_as_a_pushed_request(storage, confidential):
    """The continuation names a redeemed request: it resumes it, it cannot redeem it again."""
    requests = PushedRequests(storage, 60)
    client_id = confidential.client_id
    reference = requests.push(client_id, {"client_id": [client_id]}).removeprefix(PREFIX)
    continuation = requests.redeem(client_id, reference)
    assert continuation is not None
    again = continuation.removeprefix(PREFIX)
    assert requests.redeem(client_id, again) is None
    assert requests.resume(client_id, again) is not None
    assert requests.resume(client_id, reference) is None  # the pushed one is gone


@pytest.mark.parametrize(
    "request_uri",
    [
        pytest.param("https://rp.example/r", id="not-ours"),
        pytest.param(PREFIX, id="empty"),
        pytest.param(PREFIX + "A" * 65, id="too-long"),
        pytest.param(PREFIX + "a/b+c", id="not-base64url"),
        pytest.param(PREFIX + "abc\u00e9", id="not-ascii"),
    ],
)
def test_only_our_request_uris_are_looked_up(request_uri):
    assert reference_of(request_uri) is None


def test_our_request_uris_name_their_reference():
    assert reference_of(PREFIX + "A-_z" * 11) == "A-_z" * 11


def test_a_redeemed_request_is_finished_once(storage, confidential):
    requests = PushedRequests(storage, 60)
    client_id = confidential.client_id
    reference = requests.push(client_id, {"client_id": [client_id]}).removeprefix(PREFIX)
    continuation = requests.redeem(client_id, reference)
    assert continuation is not None
    found = requests.resume(client_id, continuation.removeprefix(PREFIX))
    assert found is not None
    assert requests.finish(found[0]) is True
    assert requests.finish(found[0]) is False


def test_two_allows_at_two_replicas_give_one_code(client, config, user, confidential):
    continuation = continue_at(client, authorize_pushed(confidential, pushed(client, confidential)))
    signed_in_at(client, continuation, user.email)
    page = client.get(continuation)
    form = {"action": "allow", "csrf_token": csrf_token(page)}
    with running(config, cookies=dict(client.cookies)) as replica:
        answers = at_once(
            lambda: client.post(continuation, data=form),
            lambda: replica.post(continuation, data=form),
        )
    assert sorted(a.status_code for a in answers) == [302, 400]
