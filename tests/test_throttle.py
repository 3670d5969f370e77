"""Login throttling (gateway/throttle.py): counted in the database, keyed by (user, address) and
by address, a capped per-user delay at every address instead of a lock, known-device cookies
that skip that delay, the same answers for unknown users. (The device cookie at the login page:
tests/issuer/test_devices.py.)

Time is moved by ageing the ``login_failures`` rows or by passing ``now``, never by sleeping."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.app import GatewayApp, create_app
from gateway.config import Config, ProxyConfig, ThrottleConfig
from gateway.forwarded import ForwardedPolicy
from gateway.housekeeping import prune_expired
from gateway.issuer.devices import DeviceCodec
from gateway.models import DeviceReset, LoginFailure
from gateway.storage import Storage
from gateway.throttle import Attempt, LoginThrottle, TooManyAttempts, address_key
from tests.support.app import Registered
from tests.support.issuer import authorize_url, login, oauth_error, password_grant, tokens
from tests.support.throttle import WRONG, age, from_, throttled

failures = cast(sa.Table, LoginFailure.__table__)


def rows(storage: Storage) -> int:
    with storage.engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(failures)) or 0)


def wrong(response: Any) -> None:
    body = oauth_error(response, 400, "invalid_grant")
    assert body["error_description"] == "Invalid username or password."
    assert "retry-after" not in response.headers


# --- the lock-out attack fails; a distributed guesser is slowed at every address ------------


def test_a_distributed_attacker_cannot_lock_the_user_out(app, storage, user, confidential):
    """Five failures used to lock the account for everyone. Now 40 guesses from 8 addresses
    cost the real user, from an address of their own, at most ``max_user_delay``."""
    for i in range(8):
        attacker = from_(app, f"10.0.0.{i + 1}")
        for _ in range(5):
            response = password_grant(attacker, confidential, password=WRONG)
            assert response.status_code == 400
    victim = from_(app, "192.0.2.10")
    wait = throttled(password_grant(victim, confidential))
    assert wait <= app.gateway.config.throttle.max_user_delay
    age(storage, wait)
    tokens(password_grant(victim, confidential))


def test_a_fresh_address_is_delayed_once_the_user_is_past_the_threshold(
    app, storage, user, confidential
):
    """Issue 15 §8 as reported: wrong password grants for one user over three addresses, then
    a guess from a fourth, fresh address was checked at once (no Retry-After)."""
    for n in range(20):
        password_grant(from_(app, f"10.0.1.{n % 3 + 1}"), confidential, password=WRONG)
    fresh = from_(app, "10.0.1.4")
    before = rows(storage)
    assert throttled(password_grant(fresh, confidential, password=WRONG)) == 1
    assert rows(storage) == before, "a refused attempt must write nothing"
    age(storage, 1.01)
    wrong(password_grant(fresh, confidential, password=WRONG))  # checked once the wait passed
    assert throttled(password_grant(from_(app, "10.0.1.5"), confidential)) == 2


def test_the_user_delay_starts_at_max_failures_from_any_address(storage: Storage) -> None:
    throttle = LoginThrottle(storage, ThrottleConfig(max_failures=3, max_user_delay=5), b"k" * 32)
    now = 1_500_000.0
    for n in range(3):  # under the threshold, a fresh address is checked at once
        throttle.failed(throttle.admit("alice@example.com", f"10.1.0.{n + 1}", now), now)
    with pytest.raises(TooManyAttempts) as refused:  # at it (2 ** 0 = 1 s), even a fresh one
        throttle.admit("alice@example.com", "10.1.9.9", now + 0.5)
    assert (refused.value.key, refused.value.retry_after) == ("user", 1)
    throttle.admit("alice@example.com", "10.1.9.9", now + 1.01)
    throttle.admit("bob@example.com", "10.1.9.9", now)  # another user: not delayed


def test_the_per_user_delay_doubles_up_to_its_cap(storage: Storage) -> None:
    throttle = LoginThrottle(storage, ThrottleConfig(max_failures=3, max_user_delay=5), b"k" * 32)
    now = 1_000_000.0
    waits = []
    for n in range(8):
        address = f"10.2.0.{n + 1}"  # a fresh address each time
        if n >= 3:  # past the threshold: refused at once, for how long?
            with pytest.raises(TooManyAttempts) as refused:
                throttle.admit("alice@example.com", address, now)
            waits.append(refused.value.retry_after)
            now += refused.value.retry_after
        throttle.failed(throttle.admit("alice@example.com", address, now), now)
    assert waits == [1, 2, 4, 5, 5]


def test_refused_attempts_never_extend_the_wait(storage: Storage) -> None:
    throttle = LoginThrottle(storage, ThrottleConfig(max_failures=2, max_user_delay=5), b"k" * 32)
    now = 2_000_000.0
    for i in range(6):
        throttle.failed(
            throttle.admit("bob@example.com", f"10.3.0.{i + 1}", now + i * 6), now + i * 6
        )
    last = now + 30
    seen = []
    before = rows(storage)
    for n, t in enumerate((0.0, 1.0, 2.5, 4.0)):
        with pytest.raises(TooManyAttempts) as refused:
            throttle.admit("bob@example.com", f"10.3.1.{n + 1}", last + t)
        seen.append(refused.value.retry_after)
    assert seen == [5, 4, 3, 1]
    assert rows(storage) == before  # refusals wrote nothing
    throttle.admit("bob@example.com", "10.3.1.9", last + 5.01)  # admitted: no lock


# --- the (user, address) and address budgets ------------------------------------------------


def test_a_user_failing_from_one_address_is_refused_there_for_the_window(
    app, storage, user, confidential
):
    here = from_(app, "10.0.2.1")
    for _ in range(5):
        wrong(password_grant(here, confidential, password=WRONG))
    retry = throttled(password_grant(here, confidential))  # even the right password
    window = app.gateway.config.throttle.window
    assert window - 2 <= retry <= window
    elsewhere = from_(app, "10.0.2.2")
    assert throttled(password_grant(elsewhere, confidential)) == 1  # the user's delay only
    age(storage, 1.01)
    tokens(password_grant(elsewhere, confidential))
    age(storage, window + 1)
    tokens(password_grant(here, confidential))  # the window has passed


def test_an_address_guessing_many_users_is_refused_for_any_user(app, storage, user, confidential):
    budget = app.gateway.config.throttle.address_budget
    assert budget == 20  # four times max_failures by default
    attacker = from_(app, "10.0.3.1")
    for i in range(budget):
        wrong(password_grant(attacker, confidential, email=f"user{i}@example.com"))
    assert throttled(password_grant(attacker, confidential)) > 0
    tokens(password_grant(from_(app, "10.0.3.2"), confidential))


def test_unknown_users_get_the_same_answers(app, storage, user, confidential):
    """No enumeration: an unknown user is counted and refused exactly like a known one."""
    answers = {}
    for n, email in enumerate((user.email, "nobody@example.com")):
        here = from_(app, f"10.0.4.{n + 1}")
        seen = [password_grant(here, confidential, email=email, password=WRONG) for _ in range(6)]
        answers[email] = [(r.status_code, r.json(), r.headers.get("retry-after")) for r in seen]
    assert answers[user.email] == answers["nobody@example.com"]
    assert answers[user.email][-1][2] is not None


def test_success_clears_that_address_and_otherwise_writes_nothing(app, storage, user, confidential):
    here = from_(app, "10.0.5.1")
    for _ in range(3):
        wrong(password_grant(here, confidential, password=WRONG))
    other = from_(app, "10.0.5.2")
    wrong(password_grant(other, confidential, password=WRONG))
    assert rows(storage) == 4
    tokens(password_grant(here, confidential))
    assert rows(storage) == 1  # this address's failures for this user went; the other stays

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(app.gateway.storage.engine, "before_cursor_execute", record)
    try:
        tokens(password_grant(from_(app, "10.0.5.3"), confidential))
    finally:
        sa.event.remove(app.gateway.storage.engine, "before_cursor_execute", record)
    assert not [s for s in statements if "login_failures" in s], statements


def test_the_login_page_shares_the_throttle(app, storage, user, confidential):
    here = from_(app, "10.0.6.1", follow_redirects=False)
    for _ in range(5):
        wrong(password_grant(here, confidential, password=WRONG))
    response = login(here, authorize_url(confidential), user.email)
    assert response.status_code == 401
    assert "Too many failed attempts" in response.text
    assert int(response.headers["retry-after"]) > 0


# --- known devices ----------------------------------------------------------------------------

SECRET = b"k" * 32
DEVICE_TTL = 3600.0
#: alice's known device is issued at ISSUED; her attackers fail at ATTACK; NOW she tries again
ISSUED, ATTACK = 3_000_000.0, 3_000_100.0
NOW = ATTACK + 0.5


@dataclasses.dataclass(frozen=True)
class Attacked:
    throttle: LoginThrottle
    codec: DeviceCodec
    #: a valid cookie of alice's, from before the attack
    cookie: str

    def key(self, email: str) -> str:
        return self.throttle.user_key(email)

    def admit(self, cookie: str | None, address: str = "192.0.2.1", now: float = NOW) -> Attempt:
        device = self.codec.loads(cookie, now)
        return self.throttle.admit("alice@example.com", address, now, device)


@pytest.fixture
def attacked(storage: Storage) -> Attacked:
    """alice past the threshold: five failures from five addresses at ATTACK (a 4 s delay)."""
    config = ThrottleConfig(max_failures=3, max_user_delay=60, device_ttl=DEVICE_TTL)
    throttle = LoginThrottle(storage, config, SECRET)
    codec = DeviceCodec(SECRET, secure=False, ttl=DEVICE_TTL)
    alice = throttle.user_key("alice@example.com")
    for n in range(5):
        throttle.failed(Attempt(alice, f"10.5.0.{n + 1}", 0), ATTACK)
    return Attacked(throttle, codec, codec.dumps(alice, ISSUED))


def test_a_known_device_skips_the_per_user_delay(attacked: Attacked) -> None:
    with pytest.raises(TooManyAttempts) as refused:
        attacked.admit(None)
    assert (refused.value.key, refused.value.retry_after) == ("user", 4)
    attempt = attacked.admit(attacked.cookie)  # the same browser: at once
    device = attacked.codec.loads(attacked.cookie, NOW)
    assert device is not None and attempt.device_id == device.device_id


def test_one_read_decides_devices_included(attacked: Attacked) -> None:
    """The throttle's whole decision, the device's failures and the user's forgotten devices
    included, is one statement before the password is checked."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        attacked.admit(attacked.cookie)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert len(statements) == 1, statements


def test_a_known_device_leaves_the_address_budgets(storage: Storage) -> None:
    throttle = LoginThrottle(storage, ThrottleConfig(max_failures=3), SECRET)
    codec = DeviceCodec(SECRET, secure=False, ttl=DEVICE_TTL)
    device = codec.loads(codec.dumps(throttle.user_key("alice@example.com"), ISSUED), NOW)
    for _ in range(3):  # alice from one address (another browser): that pair's budget
        throttle.failed(throttle.admit("alice@example.com", "10.6.0.1", ATTACK), ATTACK)
    for n in range(12):  # many users from another: that address's budget
        throttle.failed(throttle.admit(f"u{n}@example.com", "10.6.0.2", ATTACK), ATTACK)
    for address, key in (("10.6.0.1", "user_address"), ("10.6.0.2", "address")):
        with pytest.raises(TooManyAttempts) as refused:
            throttle.admit("alice@example.com", address, NOW, device)
        assert refused.value.key == key
    throttle.admit("alice@example.com", "10.6.0.3", NOW, device)  # the user delay: skipped


def _tagged(key: bytes, data: str) -> str:
    tag = hmac.new(key, data.encode(), hashlib.sha256).digest()
    return f"{data}.{base64.urlsafe_b64encode(tag).rstrip(b'=').decode()}"


def _data(cookie: str) -> str:
    return cookie.rsplit(".", 1)[0]


def _other_field(cookie: str, index: int, value: str) -> str:
    fields = cookie.split(".")
    fields[index] = value
    return ".".join(fields)


BAD_COOKIES = [
    pytest.param(lambda a: a.codec.dumps(a.key("bob@example.com"), ISSUED), id="another-users"),
    pytest.param(
        lambda a: a.codec.dumps(a.key("alice@example.com"), NOW - DEVICE_TTL), id="expired"
    ),
    pytest.param(lambda a: a.cookie[:-1] + ("B" if a.cookie[-1] == "A" else "A"), id="bad-mac"),
    pytest.param(lambda a: a.cookie[:-1], id="truncated"),
    pytest.param(lambda a: _data(a.cookie), id="no-mac"),
    pytest.param(lambda a: a.cookie + ".", id="extra-field"),
    pytest.param(lambda a: a.cookie + "\n", id="trailing-newline"),
    pytest.param(lambda a: a.cookie + "A" * 200, id="too-long"),
    pytest.param(lambda a: a.cookie[:70] + "é" + a.cookie[71:], id="non-ascii"),
    pytest.param(lambda a: _other_field(a.cookie, 2, "\uff13" * 13), id="fullwidth-digits"),
    pytest.param(lambda a: "garbage", id="garbage"),
    pytest.param(lambda a: "", id="empty"),
    pytest.param(lambda a: _other_field(a.cookie, 0, a.key("bob@example.com")), id="user-swapped"),
    pytest.param(lambda a: _other_field(a.cookie, 2, str(int(NOW * 1000))), id="issued-later"),
    pytest.param(
        lambda a: DeviceCodec(b"another deployment", False, DEVICE_TTL).dumps(
            a.key("alice@example.com"), ISSUED
        ),
        id="another-secret",
    ),
    pytest.param(
        lambda a: _tagged(
            hashlib.sha256(b"gateway-session\x00" + SECRET).digest(), _data(a.cookie)
        ),
        id="session-cookie-key",
    ),
    pytest.param(
        lambda a: _tagged(
            hmac.new(SECRET, b"gateway login-throttle user v1", hashlib.sha256).digest(),
            _data(a.cookie),
        ),
        id="throttle-user-key",
    ),
]


@pytest.mark.parametrize("bad", BAD_COOKIES)
def test_a_bad_device_cookie_exempts_nothing(
    attacked: Attacked, bad: Callable[[Attacked], str]
) -> None:
    cookie = bad(attacked)
    device = attacked.codec.loads(cookie, NOW)  # refused by the codec, or names someone else
    assert device is None or device.user_key != attacked.key("alice@example.com")
    with pytest.raises(TooManyAttempts) as refused:
        attacked.admit(cookie)
    assert refused.value.key == "user"


def test_an_exhausted_device_stops_exempting(storage: Storage, attacked: Attacked) -> None:
    """A stolen cookie buys ``max_failures`` guesses (3 here), not more; the failures count
    against that device only."""
    for n in range(3):
        attempt = attacked.admit(attacked.cookie, f"10.7.0.{n + 1}")
        attacked.throttle.failed(attempt, NOW)
    with storage.engine.connect() as conn:
        marked = conn.scalars(sa.select(failures.c.device_id).where(failures.c.at == NOW)).all()
    device = attacked.codec.loads(attacked.cookie, NOW)
    assert device is not None and marked == [device.device_id] * 3
    with pytest.raises(TooManyAttempts) as refused:
        attacked.admit(attacked.cookie, "10.7.0.9")
    assert refused.value.key == "user"
    another = attacked.codec.dumps(attacked.key("alice@example.com"), ISSUED)
    attacked.admit(another, "10.7.0.9")  # alice's other browser still vouches for her
    # once those failures leave the window, the device counts again
    attacked.admit(attacked.cookie, "10.7.0.9", NOW + 300.01)


def test_forgotten_devices_exempt_nothing(storage: Storage, attacked: Attacked) -> None:
    alice = attacked.key("alice@example.com")
    before = attacked.codec.dumps(alice, ISSUED + 50)
    attacked.throttle.forget_devices("alice@example.com", ISSUED + 50)
    for cookie in (attacked.cookie, before):  # issued before the forget, or at its moment
        with pytest.raises(TooManyAttempts):
            attacked.admit(cookie)
    after = attacked.codec.dumps(alice, ISSUED + 60)  # signed in again since
    attacked.admit(after)
    attacked.throttle.forget_devices("alice@example.com", ISSUED + 70)  # again: the later time
    with pytest.raises(TooManyAttempts):
        attacked.admit(after)
    with storage.engine.connect() as conn:
        assert conn.execute(sa.select(DeviceReset.user_key, DeviceReset.not_before)).all() == [
            (alice, ISSUED + 70)
        ]


# --- who the client is --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
    ],
)
def test_addresses_count_one_by_one_and_ipv6_by_64(address: str, key: str) -> None:
    assert address_key(address) == key


def test_ipv6_addresses_of_one_64_share_a_budget(app, storage, user, confidential):
    for host in range(1, 6):
        wrong(password_grant(from_(app, f"2001:db8:7::{host}"), confidential, password=WRONG))
    throttled(password_grant(from_(app, "2001:db8:7::ffff"), confidential))
    age(storage, 1.01)  # past the user's delay: the /64's own budget still refuses it
    throttled(password_grant(from_(app, "2001:db8:7::ffff"), confidential))
    tokens(password_grant(from_(app, "2001:db8:8::1"), confidential))  # another /64


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),  # left of it: the client's say
        ("127.0.0.1", ["6.6.6.6", "203.0.113.9, 10.8.0.2"], "203.0.113.9"),  # a trusted hop
        ("127.0.0.1", ["10.8.0.1, 10.8.0.2"], "10.8.0.1"),  # all trusted: the farthest
        ("127.0.0.1", [], "127.0.0.1"),
        ("198.51.100.4", ["203.0.113.9"], "198.51.100.4"),  # not trusted: its say is ignored
        ("127.0.0.1", ["[2001:db8::5]"], "[2001:db8::5]"),
    ],
)
def test_client_address_is_the_rightmost_untrusted_forwarded_for(
    peer: str, forwarded_for: list[str], client: str
) -> None:
    policy = ForwardedPolicy(("127.0.0.1", "10.8.0.0/16"))
    assert policy.client_address(peer, forwarded_for) == client


@pytest.fixture
def behind_proxy(config: Config, storage: Storage) -> Iterator[GatewayApp]:
    trusting = dataclasses.replace(config, proxy=ProxyConfig(trusted_proxies=("127.0.0.1",)))
    app = create_app(trusting)
    yield app
    app.gateway.storage.dispose()


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    behind_proxy: GatewayApp, storage: Storage, user: Any, confidential: Registered
) -> None:
    def via_proxy(forwarded_for: str) -> TestClient:
        return from_(behind_proxy, "127.0.0.1", headers={"X-Forwarded-For": forwarded_for})

    for n in range(5):  # the attacker varies the part it controls: still one address
        wrong(password_grant(via_proxy(f"1.2.3.{n}, 203.0.113.50"), confidential, password=WRONG))
    age(storage, 1.01)  # past the user's delay: the address's own budget still refuses it
    throttled(password_grant(via_proxy("9.9.9.9, 203.0.113.50"), confidential))
    tokens(password_grant(via_proxy("203.0.113.51"), confidential))


# --- housekeeping --------------------------------------------------------------------------------


def test_housekeeping_prunes_failures_past_the_window(app, storage, user, confidential):
    here = from_(app, "10.0.9.1")
    for _ in range(2):
        wrong(password_grant(here, confidential, password=WRONG))
    assert prune_expired(storage)["login_failures"] == 0
    age(storage, app.gateway.config.throttle.window + 1)
    assert prune_expired(storage)["login_failures"] == 2
    assert rows(storage) == 0
