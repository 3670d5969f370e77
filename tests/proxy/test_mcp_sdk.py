"""End to end with the official MCP Python SDK (``mcp`` on PyPI), as an agent meets the gateway.

A real MCP server (the SDK's ``MCPServer``, streamable HTTP, no authorization code of its own)
sits behind an ``mcp = true`` route of a real ``gateway serve``. The SDK's OAuth client starts
with nothing but the server's URL: from the first 401 it finds the protected-resource metadata,
then the authorization server's, registers itself (once by dynamic registration, once by a
Client ID Metadata Document served over https on loopback), sends the user through the login
and consent pages (driven over HTTP as a browser would post them), and calls tools with a token
whose audience is the MCP server alone. A guarded tool is refused until the client steps its
scope up, which it does by itself from the 403's challenge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import httpx2
import jwt
import pytest
import trustme
import uvicorn
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from tests.support.documents import Answer, ca_file, serving
from tests.support.live import (
    PASSWORD,
    LiveGateway,
    free_port,
    parse_page,
    query_of,
    running_gateway,
    wait_until,
)

pytestmark = pytest.mark.live

EMAIL = "agent.owner@example.com"
DOCUMENT = "/agent/client.json"
CALLBACK = (
    "http://127.0.0.1:47613/callback"  # never listened on: the redirect is read, not followed
)


def mcp_server() -> tuple[MCPServer, list[str]]:
    """Two tools: ``echo`` for any token of the route, ``delete_orders`` guarded by a scope."""
    server = MCPServer("orders")
    calls: list[str] = []

    @server.tool()
    def echo(text: str) -> str:
        calls.append("echo")
        return f"echo: {text}"

    @server.tool()
    def delete_orders() -> str:
        calls.append("delete_orders")
        return "deleted"

    return server, calls


@contextlib.contextmanager
def under_uvicorn(app: Any) -> Iterator[int]:
    """``app`` under uvicorn on a free loopback port, in a thread; stopped after."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, f"the MCP server on {port}")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def metadata_document(url: str) -> dict[str, Any]:
    """What an agent publishes about itself at ``url``, its ``client_id``."""
    return {
        "client_id": url,
        "client_name": "Agent by metadata document",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


class Person:
    """The user at a browser: signs in once, then allows what each consent page asks."""

    def __init__(self, email: str, password: str) -> None:
        self.email = email
        self.password = password
        self.browser = httpx.Client(follow_redirects=False, timeout=10.0)
        self.consents: list[str] = []
        self.answer: dict[str, str] | None = None

    def __enter__(self) -> Person:
        return self

    def __exit__(self, *exc: object) -> None:
        self.browser.close()

    def authorize(self, url: str) -> None:
        page = self.visit(url)
        if page is None:  # signed in and consented before: straight back to the client
            return
        if "password" in page.text:
            form = parse_page(page.text).forms[0]
            page = self.visit(
                urljoin(str(page.url), form.action),
                {**form.hidden, "email": self.email, "password": self.password},
            )
        assert page is not None and page.status_code == 200, page and page.text
        self.consents.append(page.text)
        allow = next(f for f in parse_page(page.text).forms if ("action", "allow") in f.buttons)
        answered = self.visit(
            urljoin(str(page.url), allow.action), {**allow.hidden, "action": "allow"}
        )
        assert answered is None, answered and answered.text

    def visit(self, url: str, form: dict[str, str] | None = None) -> httpx.Response | None:
        """Load ``url`` (post ``form`` to it), following the gateway's redirects as a browser
        would; None once a redirect leads back to the client (its answer kept)."""
        response = self.browser.post(url, data=form) if form is not None else self.browser.get(url)
        while response.status_code in (302, 303):
            location = urljoin(url, response.headers["location"])
            if location.startswith(CALLBACK + "?"):
                self.answer = query_of(location)
                return None
            url = location
            response = self.browser.get(url)
        return response

    async def redirect_handler(self, url: str) -> None:
        await asyncio.to_thread(self.authorize, url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.answer is not None and "code" in self.answer, self.answer
        answer, self.answer = self.answer, None
        return AuthorizationCodeResult(
            code=answer["code"], state=answer.get("state"), iss=answer.get("iss")
        )


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def deployment(
    tmp_path: Path, database_url: str, ca: trustme.CA
) -> Iterator[tuple[LiveGateway, list[str]]]:
    """The MCP server behind the gateway's ``/mcp`` route, and a user to sign in as."""
    server, calls = mcp_server()
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    trusted = ca_file(ca, tmp_path)
    with under_uvicorn(app) as mcp_port:
        port = free_port()
        extra = f"""
[registration]
dynamic = "open"
metadata_documents = true
allow_private_addresses = true
ca_file = "{trusted}"

[[routes]]
path = "/mcp"
upstream = "http://127.0.0.1:{mcp_port}"
audience = "http://127.0.0.1:{port}/mcp"
resource_name = "Orders MCP"
scopes = ["mcp:use"]
mcp = true
mcp_tool_scopes = {{ "delete_*" = ["mcp:admin"], "*" = [] }}

[[routes]]
path = "/other"
upstream = "http://127.0.0.1:{mcp_port}"
audience = "http://127.0.0.1:{port}/other"
scopes = ["mcp:use"]
"""
        with running_gateway(tmp_path / "gw", database_url, port=port, extra_toml=extra) as gateway:
            gateway.create_user(EMAIL)
            yield gateway, calls


async def agent_session(
    gateway: LiveGateway, person: Person, client_metadata_url: str | None
) -> tuple[MemoryStorage, list[str]]:
    """The SDK's client, from the bare URL: list the tools, call the open one, then the guarded
    one (refused, stepped up, called)."""
    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=f"{gateway.base_url}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="Agent by registration",
            redirect_uris=[CALLBACK],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
        client_metadata_url=client_metadata_url,
    )
    results = []
    async with httpx2.AsyncClient(auth=provider, timeout=30.0) as http:
        async with Client(
            streamable_http_client(f"{gateway.base_url}/mcp", http_client=http)
        ) as mcp:
            tools = await mcp.list_tools()
            results.append(",".join(sorted(t.name for t in tools.tools)))
            echoed = await mcp.call_tool("echo", {"text": "hello"})
            results.append(echoed.content[0].text)  # type: ignore[union-attr]
            deleted = await mcp.call_tool("delete_orders", {})
            results.append(deleted.content[0].text)  # type: ignore[union-attr]
    return storage, results


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_an_agent_registers_itself_signs_in_and_steps_up_for_a_guarded_tool(
    deployment: tuple[LiveGateway, list[str]],
) -> None:
    gateway, calls = deployment
    with Person(EMAIL, PASSWORD) as person:
        storage, results = asyncio.run(agent_session(gateway, person, None))
    assert results == ["delete_orders,echo", "echo: hello", "deleted"]
    assert calls == ["echo", "delete_orders"]
    # one sign-in and consent for the route's scope, a second consent for the tool's scope
    assert len(person.consents) == 2
    assert "Orders MCP" in person.consents[0]  # the resource, by its name
    assert "data-client-host" not in person.consents[0]  # a host is shown for documents only
    assert storage.client is not None and storage.client.client_secret is None
    registered = [
        c
        for c in json.loads(gateway.cli("client", "list", "--json"))
        if c["client_id"] == storage.client.client_id
    ]
    assert registered and registered[0]["origin"] == "registration"
    assert storage.tokens is not None
    claims = claims_of(storage.tokens.access_token)
    assert claims["aud"] == f"{gateway.base_url}/mcp"
    assert set(claims["scope"].split()) >= {"mcp:use", "mcp:admin"}
    # the token is for the MCP server alone: another resource of the same gateway refuses it
    refused = httpx.get(
        f"{gateway.base_url}/other",
        headers={"Authorization": f"Bearer {storage.tokens.access_token}"},
    )
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_an_agent_named_by_its_metadata_document(
    deployment: tuple[LiveGateway, list[str]], ca: trustme.CA
) -> None:
    gateway, calls = deployment
    with Person(EMAIL, PASSWORD) as person, serving(ca) as site:
        # the agent's own web site, over https on loopback (allow_private_addresses)
        url = site.url(DOCUMENT, host="127.0.0.1")
        site.answers[DOCUMENT] = Answer.json(metadata_document(url))
        storage, results = asyncio.run(agent_session(gateway, person, url))
    assert results == ["delete_orders,echo", "echo: hello", "deleted"]
    assert calls == ["echo", "delete_orders"]
    assert storage.client is not None and storage.client.client_id == url
    assert site.hits[DOCUMENT] >= 1
    # the client's host beside its name, and the warning: every redirect URI is on loopback
    assert f"Published at <strong>{urlsplit(url).netloc}</strong>" in person.consents[0]
    assert 'data-warning="loopback-only"' in person.consents[0]
    listed = [
        c for c in json.loads(gateway.cli("client", "list", "--json")) if c["client_id"] == url
    ]
    assert listed and listed[0]["origin"] == "metadata-document"
    assert storage.tokens is not None
    assert claims_of(storage.tokens.access_token)["aud"] == f"{gateway.base_url}/mcp"
