"""RFC 8707 resource indicators at the issuer: ``resource`` at the authorization and token
endpoints, for every grant; the token's ``aud``; ``invalid_target``; what a code, a grant, a
client and a remembered consent hold a token to; the consent page naming the resources."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway import accounts
from gateway.app import create_app
from gateway.config import Config, RouteConfig
from gateway.models import Consent, Grant, User
from gateway.storage import Storage

ISSUER = "http://127.0.0.1:8000"  # the root conftest's; also the default audience here
PASSWORD = "correct horse battery staple"
REDIRECT_URI = "http://127.0.0.1:9999/callback"
NOWHERE = "http://127.0.0.1:9"
#: the routes' host: not the issuer's
API = "api.example.com"

ORDERS = "https://api.example.com/orders"
BILLING = "https://billing.example.com"
UNKNOWN = "https://elsewhere.example.com/orders"


@pytest.fixture
def routed(config: Config) -> Config:
    """Three resources: the orders API (named), billing (two routes), and the default
    audience (the issuer: a route without ``audience``)."""
    return dataclasses.replace(
        config,
        routes=(
            RouteConfig(
                path="/orders",
                host=API,
                upstream=NOWHERE,
                audience=ORDERS,
                scopes=(("orders:read",),),
                resource_name="Orders API",
            ),
            RouteConfig(path="/billing", host=API, upstream=NOWHERE, audience=BILLING),
            RouteConfig(path="/invoices", host=API, upstream=NOWHERE, audience=BILLING),
            RouteConfig(path="/profile", host=API, upstream=NOWHERE),
        ),
    )


@pytest.fixture
def http(routed: Config, storage: Storage) -> Iterator[TestClient]:
    app = create_app(routed)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as test_client:
        yield test_client
    app.gateway.storage.dispose()


@dataclasses.dataclass(frozen=True)
class App:
    client_id: str
    secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.secret)


def new_client(storage: Storage, resources: list[str] | None = None) -> App:
    with storage.session() as session:
        new = accounts.create_client(
            session,
            "Agent",
            [REDIRECT_URI],
            ["authorization_code", "password", "refresh_token", "client_credentials"],
            "orders:read profile",
            "client_secret_basic",
            resources=resources,
        )
    assert new.client_secret is not None
    return App(new.client.client_id, new.client_secret)


@pytest.fixture
def agent(storage: Storage) -> App:
    return new_client(storage)


@pytest.fixture
def limited(storage: Storage) -> App:
    """A client that may only ask for the orders API."""
    return new_client(storage, [ORDERS])


def token(http: TestClient, agent: App, *resources: str, **form: str) -> httpx.Response:
    fields = [*form.items(), *(("resource", r) for r in resources)]
    return http.post("/oauth/token", content=urlencode(fields), auth=agent.auth, headers=FORM)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def password(http: TestClient, agent: App, *resources: str) -> httpx.Response:
    return token(
        http,
        agent,
        *resources,
        grant_type="password",
        username="alice@example.com",
        password=PASSWORD,
    )


def issued(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def audience(http: TestClient, access_token: str) -> Any:
    """The ``aud`` of a token verified by PyJWT against the JWKS served, as a resource would."""
    jwks = http.get("/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(access_token)["kid"]
    (found,) = [k for k in jwks["keys"] if k["kid"] == kid]
    claims = jwt.decode(
        access_token,
        key=jwt.PyJWK(found),
        algorithms=[found["alg"]],
        issuer=ISSUER,
        options={"verify_aud": False, "require": ["aud", "exp", "iat", "sub", "jti"]},
    )
    return claims["aud"]


def invalid_target(response: httpx.Response) -> str:
    """RFC 8707 §2 at the token endpoint: 400 JSON ``invalid_target``; its description."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == "invalid_target", body
    return str(body["error_description"])


# --- the authorization pages, driven like a browser ----------------------------------------


def authorize_url(agent: App, *resources: str, **params: str) -> str:
    query = [
        ("response_type", "code"),
        ("client_id", agent.client_id),
        ("redirect_uri", REDIRECT_URI),
        ("state", "xyz"),
        ("scope", "orders:read"),
        *params.items(),
        *(("resource", r) for r in resources),
    ]
    return "/oauth/authorize?" + urlencode(query)


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def sign_in(http: TestClient, url: str) -> None:
    page = http.get(url)
    assert 'name="password"' in page.text, page.text
    form = {"action": "login", "email": "alice@example.com", "password": PASSWORD}
    posted = http.post(url, data={**form, "csrf_token": csrf(page)})
    assert posted.status_code == 303, posted.text


def is_consent_page(page: httpx.Response) -> bool:
    return page.status_code == 200 and 'value="allow"' in page.text


def redirect_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return {name: values[0] for name, values in query.items()}


def allow(http: TestClient, url: str) -> dict[str, str]:
    page = http.get(url)
    assert is_consent_page(page), page.text
    return redirect_query(http.post(url, data={"action": "allow", "csrf_token": csrf(page)}))


def code_for(http: TestClient, agent: App, *resources: str) -> str:
    """Signed in (or not yet), the authorization request for ``resources``, allowed."""
    url = authorize_url(agent, *resources)
    page = http.get(url)
    if 'name="password"' in page.text:
        sign_in(http, url)
        page = http.get(url)
    query = redirect_query(page) if page.status_code == 302 else allow(http, url)
    return query["code"]


def redeem(http: TestClient, agent: App, code: str, *resources: str) -> httpx.Response:
    return token(
        http,
        agent,
        *resources,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
    )


# --- the token endpoint -----------------------------------------------------------------------


class TestAudience:
    """ "The access token's ``aud`` is the requested resources (a string for one)"."""

    def test_one_resource_is_a_string(self, http: TestClient, user: User, agent: App) -> None:
        assert audience(http, issued(password(http, agent, ORDERS))["access_token"]) == ORDERS

    def test_several_are_a_list_in_their_order_each_once(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        body = issued(password(http, agent, BILLING, ORDERS, BILLING))
        assert audience(http, body["access_token"]) == [BILLING, ORDERS]

    def test_none_named_is_the_default_audience(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        assert audience(http, issued(password(http, agent))["access_token"]) == ISSUER

    def test_the_default_audience_may_be_named(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        assert audience(http, issued(password(http, agent, ISSUER))["access_token"]) == ISSUER

    def test_client_credentials(self, http: TestClient, agent: App) -> None:
        body = issued(token(http, agent, BILLING, grant_type="client_credentials"))
        assert audience(http, body["access_token"]) == BILLING
        again = issued(token(http, agent, grant_type="client_credentials"))
        assert audience(http, again["access_token"]) == ISSUER

    def test_introspection_returns_it(
        self, http: TestClient, user: User, agent: App, storage: Storage
    ) -> None:
        with storage.session() as session:
            api = accounts.create_client(
                session, "Resource server", [], ["client_credentials"], "", "client_secret_basic"
            )
            api.client.can_introspect = True
        access = issued(password(http, agent, ORDERS, BILLING))["access_token"]
        assert api.client_secret is not None
        info = http.post(
            "/oauth/introspect",
            data={"token": access},
            auth=(api.client.client_id, api.client_secret),
        ).json()
        assert info["active"] is True
        assert info["aud"] == [ORDERS, BILLING]


@pytest.mark.parametrize(
    ("values", "description"),
    [
        pytest.param([UNKNOWN], "not one this server knows", id="unknown"),
        pytest.param([ORDERS, UNKNOWN], "not one this server knows", id="one-of-two-unknown"),
        pytest.param([ORDERS + "/"], "not one this server knows", id="not-exactly"),
        pytest.param([ORDERS.upper()], "not one this server knows", id="other-case"),
        pytest.param([ORDERS + "?a=1"], "not one this server knows", id="query"),
        pytest.param([ORDERS + "#top"], "without a fragment", id="fragment"),
        pytest.param(["/orders"], "absolute URI", id="relative"),
        pytest.param(["orders"], "absolute URI", id="bare-word"),
        pytest.param([""], "absolute URI", id="empty"),
        pytest.param(["https://api.example.com/ord ers"], "absolute URI", id="space"),
        pytest.param(["https://api.example.com/\u00f6"], "not one this server knows", id="utf-8"),
    ],
)
@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_invalid_target(
    http: TestClient, user: User, agent: App, values: list[str], description: str, grant: str
) -> None:
    form = {"grant_type": grant}
    if grant == "password":
        form.update(username=user.email, password=PASSWORD)
    text = invalid_target(token(http, agent, *values, **form))
    assert description in text
    for value in values:
        assert not value or value not in text  # never quoted back


def test_a_wrong_resource_costs_no_password_check(
    http: TestClient, user: User, agent: App, storage: Storage
) -> None:
    """Refused before the password is read: a wrong password is no failed attempt then."""
    response = token(
        http, agent, UNKNOWN, grant_type="password", username=user.email, password="wrong"
    )
    invalid_target(response)
    with storage.session() as session:
        failures = session.scalar(sa.text("SELECT count(*) FROM login_failures"))
    assert failures == 0


def test_repeated_resource_is_no_repeated_parameter(
    http: TestClient, user: User, agent: App
) -> None:
    """RFC 8707 §2 lets ``resource`` repeat; every other parameter still may not."""
    assert password(http, agent, ORDERS, BILLING).status_code == 200
    twice = token(
        http, agent, ORDERS, grant_type="password", username=user.email, password=PASSWORD
    )
    assert twice.status_code == 200
    form = urlencode([("grant_type", "password"), ("grant_type", "password")])
    refused = http.post("/oauth/token", content=form, auth=agent.auth, headers=FORM)
    assert refused.json()["error_description"] == "A parameter is repeated."


class TestLimitedClient:
    """``gateway client create --resource``: the only resources a client may ask for."""

    def test_its_own(self, http: TestClient, user: User, limited: App) -> None:
        assert audience(http, issued(password(http, limited, ORDERS))["access_token"]) == ORDERS

    @pytest.mark.parametrize("grant", ["password", "client_credentials"])
    def test_another_is_invalid_target(
        self, http: TestClient, user: User, limited: App, grant: str
    ) -> None:
        form = {"grant_type": grant, "username": user.email, "password": PASSWORD}
        assert "may not ask" in invalid_target(token(http, limited, ORDERS, BILLING, **form))
        assert "may not ask" in invalid_target(token(http, limited, ISSUER, **form))

    def test_naming_none_is_naming_its_own(
        self, http: TestClient, user: User, limited: App
    ) -> None:
        """The default audience is another resource: a limit is not escaped by naming none."""
        assert audience(http, issued(password(http, limited))["access_token"]) == ORDERS
        body = issued(token(http, limited, grant_type="client_credentials"))
        assert audience(http, body["access_token"]) == ORDERS

    def test_at_the_authorization_endpoint(
        self, http: TestClient, user: User, limited: App
    ) -> None:
        query = redirect_query(http.get(authorize_url(limited, BILLING)))
        assert (query["error"], query["state"], query["iss"]) == ("invalid_target", "xyz", ISSUER)

    def test_no_longer_served(self, routed: Config, storage: Storage, user: User) -> None:
        """Its only resource dropped from the routes: nothing left to ask for."""
        gone = new_client(storage, [UNKNOWN])
        with TestClient(create_app(routed), base_url=ISSUER) as http:
            assert "any more" in invalid_target(password(http, gone))


# --- authorization code -----------------------------------------------------------------------


class TestAuthorizationCode:
    def test_the_code_keeps_the_resources(self, http: TestClient, user: User, agent: App) -> None:
        code = code_for(http, agent, ORDERS, BILLING)
        body = issued(redeem(http, agent, code))
        assert audience(http, body["access_token"]) == [ORDERS, BILLING]

    def test_a_subset_at_the_token_endpoint(self, http: TestClient, user: User, agent: App) -> None:
        code = code_for(http, agent, ORDERS, BILLING)
        assert audience(http, issued(redeem(http, agent, code, BILLING))["access_token"]) == BILLING

    @pytest.mark.parametrize(
        ("authorized", "asked"),
        [
            pytest.param([ORDERS], [BILLING], id="another"),
            pytest.param([ORDERS], [ORDERS, BILLING], id="more"),
            pytest.param([ORDERS], [ISSUER], id="the-default"),
            pytest.param([], [ORDERS], id="none-authorized"),
            pytest.param([ORDERS], [UNKNOWN], id="unknown"),
        ],
    )
    def test_not_granted_is_invalid_target(
        self, http: TestClient, user: User, agent: App, authorized: list[str], asked: list[str]
    ) -> None:
        code = code_for(http, agent, *authorized)
        invalid_target(redeem(http, agent, code, *asked))
        # refused before it was used: the code still redeems, for what it was granted
        assert redeem(http, agent, code).status_code == 200

    def test_none_authorized_is_the_default(self, http: TestClient, user: User, agent: App) -> None:
        code = code_for(http, agent)
        assert audience(http, issued(redeem(http, agent, code, ISSUER))["access_token"]) == ISSUER

    def test_unknown_resource_is_a_redirect_error(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        response = http.get(authorize_url(agent, ORDERS, UNKNOWN))
        query = redirect_query(response)
        assert query["error"] == "invalid_target"
        assert (query["state"], query["iss"]) == ("xyz", ISSUER)
        assert "elsewhere" not in response.headers["location"]

    def test_with_a_bad_redirect_uri_an_error_page(self, http: TestClient, agent: App) -> None:
        """RFC 6749 §4.1.2.1: never a redirect to an unchecked URI."""
        url = authorize_url(agent, UNKNOWN, redirect_uri="https://attacker.example/cb")
        page = http.get(url)
        assert page.status_code == 400
        assert "location" not in page.headers
        assert "attacker" not in page.text

    def test_a_fragment_is_a_redirect_error(self, http: TestClient, agent: App) -> None:
        query = redirect_query(http.get(authorize_url(agent, ORDERS + "#x")))
        assert query["error"] == "invalid_target"
        assert "fragment" in query["error_description"]


# --- refresh ----------------------------------------------------------------------------------


def refresh(http: TestClient, agent: App, refresh_token: str, *resources: str) -> httpx.Response:
    return token(http, agent, *resources, grant_type="refresh_token", refresh_token=refresh_token)


class TestRefresh:
    """RFC 8707 §2.2: a refresh may ask for fewer resources; the refresh token keeps them all."""

    def test_downscoping_keeps_the_whole_grant(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        first = issued(redeem(http, agent, code_for(http, agent, ORDERS, BILLING)))
        one = issued(refresh(http, agent, first["refresh_token"], ORDERS))
        assert audience(http, one["access_token"]) == ORDERS
        other = issued(refresh(http, agent, one["refresh_token"], BILLING))
        assert audience(http, other["access_token"]) == BILLING
        every = issued(refresh(http, agent, other["refresh_token"]))
        assert audience(http, every["access_token"]) == [ORDERS, BILLING]

    def test_not_granted_is_invalid_target(
        self, http: TestClient, user: User, agent: App, storage: Storage
    ) -> None:
        first = issued(password(http, agent, ORDERS))
        for asked in ([BILLING], [ORDERS, BILLING], [ISSUER], [UNKNOWN]):
            invalid_target(refresh(http, agent, first["refresh_token"], *asked))
        # nothing rotated: the refresh token still works
        again = issued(refresh(http, agent, first["refresh_token"]))
        assert audience(http, again["access_token"]) == ORDERS
        with storage.session() as session:
            assert session.scalars(sa.select(Grant.resources)).all() == [[ORDERS]]

    def test_a_grant_that_named_none(self, http: TestClient, user: User, agent: App) -> None:
        first = issued(password(http, agent))
        invalid_target(refresh(http, agent, first["refresh_token"], ORDERS))
        named = issued(refresh(http, agent, first["refresh_token"], ISSUER))
        assert audience(http, named["access_token"]) == ISSUER

    def test_a_resource_dropped_from_the_routes(
        self, http: TestClient, routed: Config, user: User, agent: App
    ) -> None:
        """The grant outlives a resource: its tokens are for those still served."""
        first = issued(password(http, agent, ORDERS, BILLING))
        fewer = dataclasses.replace(routed, routes=routed.routes[:1])
        with TestClient(create_app(fewer), base_url=ISSUER) as later:
            body = issued(refresh(later, agent, first["refresh_token"]))
            assert audience(later, body["access_token"]) == ORDERS
            invalid_target(refresh(later, agent, body["refresh_token"], BILLING))


# --- remembered consent -----------------------------------------------------------------------


def consent_row(storage: Storage, user: User, agent: App) -> Consent | None:
    with storage.session() as session:
        return session.scalar(
            sa.select(Consent).where(
                Consent.user_id == user.id, Consent.client_id == agent.client_id
            )
        )


class TestConsent:
    """A consent that did not cover a resource does not cover it later."""

    def test_a_resource_allowed_before_asks_nothing(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        code_for(http, agent, ORDERS)
        assert http.get(authorize_url(agent, ORDERS)).status_code == 302

    @pytest.mark.parametrize(
        "asked",
        [
            pytest.param([BILLING], id="another"),
            pytest.param([ORDERS, BILLING], id="one-more"),
            pytest.param([], id="the-default"),
        ],
    )
    def test_another_asks_again(
        self, http: TestClient, user: User, agent: App, storage: Storage, asked: list[str]
    ) -> None:
        code_for(http, agent, ORDERS)
        url = authorize_url(agent, *asked)
        assert is_consent_page(http.get(url))
        allow(http, url)
        row = consent_row(storage, user, agent)
        assert row is not None
        assert row.resources == sorted({ORDERS, *(asked or [ISSUER])})
        assert http.get(authorize_url(agent, ORDERS, *asked)).status_code == 302

    def test_prompt_none_is_consent_required(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        code_for(http, agent, ORDERS)
        query = redirect_query(http.get(authorize_url(agent, BILLING, prompt="none")))
        assert query["error"] == "consent_required"

    def test_a_consent_from_before_resources_covers_the_default_only(
        self, http: TestClient, user: User, agent: App, storage: Storage
    ) -> None:
        with storage.session() as session:
            session.add(Consent(user_id=user.id, client_id=agent.client_id, scope="orders:read"))
        url = authorize_url(agent)
        sign_in(http, url)
        assert http.get(url).status_code == 302
        assert is_consent_page(http.get(authorize_url(agent, ORDERS)))
        allow(http, authorize_url(agent, ORDERS))
        row = consent_row(storage, user, agent)
        assert row is not None and row.resources == sorted([ORDERS, ISSUER])
        assert http.get(url).status_code == 302  # what it covered, it still covers

    def test_deny_remembers_nothing(
        self, http: TestClient, user: User, agent: App, storage: Storage
    ) -> None:
        code_for(http, agent, ORDERS)
        url = authorize_url(agent, BILLING)
        page = http.get(url)
        denied = http.post(url, data={"action": "deny", "csrf_token": csrf(page)})
        assert redirect_query(denied)["error"] == "access_denied"
        row = consent_row(storage, user, agent)
        assert row is not None and row.resources == [ORDERS]


def listed_resources(page: httpx.Response) -> list[tuple[str, str]]:
    """(identifier, text) of each resource the consent page lists, in order."""
    found = re.search(
        r'<ul class="scopes resources" aria-label="Resources">(.*?)</ul>', page.text, re.S
    )
    assert found, page.text
    items = re.findall(r'<li data-resource="([^"]+)">(.*?)</li>', found.group(1), re.S)
    return [(html.unescape(i), re.sub(r"<[^>]+>", " ", text).split()[0]) for i, text in items]


class TestConsentPage:
    """The page names the resources the client will reach: ``resource_name``, else the
    identifier's host and path."""

    def test_names_and_identifiers(self, http: TestClient, user: User, agent: App) -> None:
        url = authorize_url(agent, ORDERS, BILLING)
        sign_in(http, url)
        page = http.get(url)
        assert listed_resources(page) == [(ORDERS, "Orders"), (BILLING, "billing.example.com")]
        assert "Orders API" in page.text
        assert f'<span class="scope-name">{ORDERS}</span>' in page.text  # beside its name
        assert '<span class="new">' not in page.text  # nothing allowed before

    def test_the_default_audience_when_none_is_named(
        self, http: TestClient, user: User, agent: App
    ) -> None:
        url = authorize_url(agent)
        sign_in(http, url)
        assert listed_resources(http.get(url)) == [(ISSUER, "127.0.0.1:8000")]

    def test_new_ones_first_and_marked(self, http: TestClient, user: User, agent: App) -> None:
        code_for(http, agent, BILLING)
        page = http.get(authorize_url(agent, BILLING, ORDERS))
        assert [i for i, _ in listed_resources(page)] == [ORDERS, BILLING]
        assert "at more places" in page.text
        assert page.text.count('<span class="new">new</span>') == 1

    def test_no_resource_served_lists_none(
        self, config: Config, storage: Storage, user: User, agent: App
    ) -> None:
        """No route takes tokens (the default audience is the issuer's own): no list."""
        with TestClient(create_app(config), base_url=ISSUER, follow_redirects=False) as plain:
            url = authorize_url(agent)
            sign_in(plain, url)
            page = plain.get(url)
            assert is_consent_page(page)
            assert 'aria-label="Resources"' not in page.text
