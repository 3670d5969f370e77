"""Remembered consent on the authorization pages: Allow stores (user, client, scopes); a later
request for a subset skips the page, a wider one shows only the new scopes as new; Deny stores
nothing; first-party clients never see the page; concurrent Allows never fail. And what the
page says a scope means (``[scopes.descriptions]`` and the built-in texts)."""

from __future__ import annotations

import dataclasses
import re
import threading

import pytest
import sqlalchemy as sa

from gateway.config import ScopesConfig
from gateway.consents import granted_scopes, remember
from gateway.models import Consent
from tests.support.app import ISSUER, make_user
from tests.support.issuer import authorize_url, consent, csrf_token, login, redirect_params, running
from tests.support.oidc import allow, id_token_claims, is_consent_page, relying_party, signed_in


@pytest.fixture
def rp(storage):
    return relying_party(storage, "Orders web")


def stored(storage, user, registered) -> set[str] | None:
    granted = granted_scopes(storage, user.id, registered.client_id)
    return None if granted is None else set(granted)


def listed(page, label: str) -> list[str]:
    """The scope names of the page's list labelled ``label``, in order."""
    found = re.search(rf'<ul class="scopes[^"]*" aria-label="{label}">(.*?)</ul>', page.text, re.S)
    return re.findall(r'data-scope="([^"]+)"', found.group(1)) if found else []


def test_allow_is_remembered_and_the_next_request_skips_the_page(client, storage, user, rp):
    url = signed_in(client, rp, user.email, scope="openid orders:read")
    assert stored(storage, user, rp) is None
    first = allow(client, url)
    assert stored(storage, user, rp) == {"openid", "orders:read"}

    again = client.get(authorize_url(rp, scope="openid orders:read", state="s-2"))
    back = redirect_params(again)  # a 302 to the client at once, no page
    assert set(back) == {"code", "state", "iss"}
    assert (back["state"], back["iss"]) == ("s-2", ISSUER)
    assert back["code"] != first["code"]
    claims = id_token_claims(client, rp, back["code"])
    assert claims["sub"] == user.id


def test_a_narrower_request_skips_the_page(client, storage, user, rp):
    allow(client, signed_in(client, rp, user.email, scope="openid orders:read orders:write"))
    back = redirect_params(client.get(authorize_url(rp, scope="orders:read")))
    assert "code" in back


def test_a_wider_request_shows_only_the_new_scopes_as_new(client, storage, user, rp):
    allow(client, signed_in(client, rp, user.email, scope="openid orders:read"))
    url = authorize_url(rp, scope="openid orders:read orders:write email")
    page = client.get(url)
    assert is_consent_page(page)
    assert listed(page, "Requested permissions") == ["orders:write", "email"]
    assert listed(page, "Already allowed") == ["openid", "orders:read"]
    assert page.text.count('class="new"') == 2
    allow(client, url)
    assert stored(storage, user, rp) == {"openid", "orders:read", "orders:write", "email"}


def test_the_first_consent_page_marks_nothing_new(client, user, rp):
    page = client.get(signed_in(client, rp, user.email, scope="openid email"))
    assert listed(page, "Requested permissions") == ["openid", "email"]
    assert listed(page, "Already allowed") == []
    assert 'class="new"' not in page.text


def test_deny_stores_nothing(client, storage, user, rp):
    url = signed_in(client, rp, user.email, scope="orders:read")
    back = redirect_params(consent(client, url, action="deny"))
    assert back["error"] == "access_denied"
    assert stored(storage, user, rp) is None
    assert is_consent_page(client.get(url))  # asked again


def test_deny_keeps_what_was_stored(client, storage, user, rp):
    allow(client, signed_in(client, rp, user.email, scope="orders:read"))
    url = authorize_url(rp, scope="orders:read orders:write")
    assert redirect_params(consent(client, url, action="deny"))["error"] == "access_denied"
    assert stored(storage, user, rp) == {"orders:read"}
    assert "code" in redirect_params(client.get(authorize_url(rp, scope="orders:read")))


def test_consent_is_per_user(client, storage, user, rp):
    allow(client, signed_in(client, rp, user.email, scope="orders:read"))
    bob = make_user(storage, "bob@example.com")
    client.cookies.clear()
    assert is_consent_page(client.get(signed_in(client, rp, bob.email, scope="orders:read")))


def test_consent_is_per_client(client, storage, user, rp):
    allow(client, signed_in(client, rp, user.email, scope="orders:read"))
    other = relying_party(storage, "Other web")
    assert is_consent_page(client.get(authorize_url(other, scope="orders:read")))


def test_a_first_party_client_never_shows_the_page(client, storage, user):
    own = relying_party(storage, "Account centre", first_party=True)
    url = authorize_url(own, scope="openid email")
    posted = login(client, url, user.email)
    assert posted.status_code == 303
    back = redirect_params(client.get(url))  # straight back with a code
    assert "code" in back
    claims = id_token_claims(client, own, back["code"])
    assert claims["email"] == user.email
    assert stored(storage, user, own) is None  # nothing to remember


def test_a_first_party_client_shows_the_page_for_prompt_consent(client, storage, user):
    own = relying_party(storage, "Account centre", first_party=True)
    assert is_consent_page(client.get(signed_in(client, own, user.email, prompt="consent")))


def test_concurrent_allows_both_count(storage, user, rp):
    """Two replicas' Allows at once: neither fails on the unique constraint, both scopes
    stay (the database decides: insert, or compare-and-swap update)."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def allow_scope(scope: str) -> None:
        try:
            barrier.wait(timeout=10)
            remember(storage, user.id, rp.client_id, frozenset({scope}))
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    for round_ in range(10):
        with storage.session() as db:
            db.execute(sa.delete(Consent))
        if round_ % 2:  # a row to update (compare and swap), else one to insert (unique)
            remember(storage, user.id, rp.client_id, frozenset({"openid"}))
        threads = [
            threading.Thread(target=allow_scope, args=(f"{name}-{round_}",))
            for name in ("read", "write")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        expected = {f"read-{round_}", f"write-{round_}"} | ({"openid"} if round_ % 2 else set())
        assert stored(storage, user, rp) == expected
        with storage.session() as db:
            assert db.scalar(sa.select(sa.func.count()).select_from(Consent)) == 1


def test_concurrent_allows_through_the_pages(config, storage, user, rp):
    """The same, through two browsers' consent pages on two apps (two replicas)."""
    with running(config) as first, running(config) as second:
        urls = []
        for browser, scope in ((first, "orders:read"), (second, "orders:write")):
            url = signed_in(browser, rp, user.email, scope=scope)
            assert is_consent_page(browser.get(url))
            urls.append(url)
        results: list[int] = []
        barrier = threading.Barrier(2)

        def press(browser, url):
            token = csrf_token(browser.get(url))
            barrier.wait(timeout=10)
            response = browser.post(url, data={"action": "allow", "csrf_token": token})
            results.append(response.status_code)

        threads = [
            threading.Thread(target=press, args=pair)
            for pair in zip((first, second), urls, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert results == [302, 302]
    assert stored(storage, user, rp) == {"orders:read", "orders:write"}


# --- what a scope means (issue 10, point 6) ---------------------------------------------------


def test_descriptions_from_the_config_and_built_in(config, storage, user):
    rp = relying_party(storage, scope="openid profile email orders:read orders:write")
    described = dataclasses.replace(
        config, scopes=ScopesConfig(descriptions={"orders:read": "See your orders"})
    )
    with running(described) as client:
        page = client.get(
            signed_in(client, rp, user.email, scope="openid profile email orders:read orders:write")
        )
    assert "See your orders" in page.text
    assert "Confirm who you are" in page.text  # openid
    assert "See your name" in page.text  # profile
    assert "See your email address" in page.text  # email
    # the names are shown too; a scope nothing describes is shown by its name alone
    for name in ("openid", "profile", "email", "orders:read", "orders:write"):
        assert f'<span class="scope-name">{name}</span>' in page.text or (
            name == "orders:write" and '<span class="scope-text">orders:write' in page.text
        )


def test_a_configured_description_is_escaped(config, storage, user):
    rp = relying_party(storage, scope="orders:read")
    described = dataclasses.replace(
        config, scopes=ScopesConfig(descriptions={"orders:read": "<b>bold</b> & co"})
    )
    with running(described) as client:
        page = client.get(signed_in(client, rp, user.email, scope="orders:read"))
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page.text
    assert "<b>bold</b>" not in page.text
