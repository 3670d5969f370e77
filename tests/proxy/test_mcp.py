"""Issue 17 §6, scopes per MCP tool: an ``mcp = true`` route reads each JSON-RPC message whole,
refuses what is not one message (400), too large (413), compressed (415) or stalled (408),
decides a ``tools/call`` on its tool's scopes (first pattern in file order, ``"*"`` fallback,
deny by default), and forwards the very bytes it read. Everything else passes as on any route:
other methods with the route's scopes, the ``GET`` stream, server-sent events.

The upstream is a real aiohttp server on 127.0.0.1 that records what it received."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import RouteConfig
from gateway.errors import ToolScopeRequired
from gateway.proxy.mcp import DECIDED_TOOLS, McpGuard
from tests.support.accesslog import LogPipe

Serve = Callable[[web.Application], Awaitable[str]]
Mint = Callable[..., str]
#: generous bound for what should happen at once (a hang fails instead of blocking)
PROMPT = 5


@dataclass
class Received:
    method: str
    path: str
    #: (lower-case name, value) as the upstream read them
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass
class Recorder:
    """An MCP server stand-in: records every request; answers JSON, or server-sent events for
    the ``GET`` stream and for a ``tools/call`` of ``stream_*``, holding the second event until
    ``release`` is set (so a test sees the first one arrive before the response is over)."""

    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in request.raw_headers]
        self.received.append(Received(request.method, request.raw_path, headers, body))
        streams = request.method == "GET" or b'"stream_' in body
        if not streams:
            answer = {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}
            accepted = request.method == "POST" and b'"id"' not in body  # a notification
            return web.json_response(answer, status=202 if accepted else 200)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: message\ndata: {"n": 1}\n\n')
        await self.release.wait()
        await response.write(b'event: message\ndata: {"n": 2}\n\n')
        await response.write_eof()
        return response


@pytest.fixture
async def upstream(serve: Serve) -> tuple[str, Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    return await serve(app), recorder


def config(url: str, extra: str = "") -> str:
    return f"""
[proxy]
idle_timeout = 0.5
[[routes]]
name = "files"
path = "/mcp"
upstream = "{url}"
scopes = ["mcp:use"]
mcp = true
mcp_max_body = 4096
[routes.mcp_tool_scopes]                 # in file order: the first match decides
"read_*" = []
"*_draft" = []
"delete_*" = [["files:admin"], ["root"]]
"write_*" = ["files:write", "mcp:use"]
"stream_*" = []

[[routes]]
name = "lenient"
path = "/lenient"
upstream = "{url}"
scopes = ["mcp:use"]
mcp = true
mcp_tool_scopes = {{ "delete_*" = ["files:admin"], "*" = [] }}

[[routes]]
name = "plain"
path = "/plain"
upstream = "{url}"
scopes = ["mcp:use"]
{extra}"""


def call(name: Any, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name}, **extra}


def bearer(token: str, **headers: str | bytes) -> dict[str, str | bytes]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}


def challenge_scope(response: httpx.Response) -> str | None:
    header = response.headers.get("www-authenticate", "")
    marker = ' scope="'
    if marker not in header:
        return None
    return header.split(marker, 1)[1].split('"', 1)[0]


# --- tools: pattern order, "*", deny by default, scope sets ---------------------------------


@pytest.mark.parametrize(
    ("path", "tool", "scope", "status", "wanted"),
    [
        pytest.param("/mcp", "read_file", "mcp:use", 200, None, id="no-extra-scope"),
        pytest.param("/mcp", "delete_draft", "mcp:use", 200, None, id="first-match-wins"),
        pytest.param("/mcp", "delete_file", "mcp:use", 403, "mcp:use files:admin", id="set-1"),
        pytest.param("/mcp", "delete_file", "mcp:use files:admin", 200, None, id="first-set"),
        pytest.param("/mcp", "delete_file", "mcp:use root", 200, None, id="second-set"),
        pytest.param("/mcp", "write_file", "mcp:use files:write", 200, None, id="every-scope"),
        pytest.param("/mcp", "write_file", "mcp:use", 403, "mcp:use files:write", id="union"),
        pytest.param("/mcp", "READ_file", "mcp:use", 403, None, id="case-sensitive"),
        pytest.param("/mcp", "list_files", "mcp:use root", 403, None, id="deny-by-default"),
        pytest.param("/lenient", "list_files", "mcp:use", 200, None, id="star-fallback"),
        pytest.param("/lenient", "delete_x", "mcp:use", 403, "mcp:use files:admin", id="before-*"),
    ],
)
async def test_a_tool_needs_its_first_matching_patterns_scopes(
    gateway: Any,
    upstream: tuple[str, Recorder],
    mint: Mint,
    path: str,
    tool: str,
    scope: str,
    status: int,
    wanted: str | None,
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    response = await gw.client.post(path, json=call(tool), headers=bearer(mint(scope)))
    assert response.status_code == status
    if status == 200:
        assert [r.path for r in recorder.received] == [path]
        return
    assert recorder.received == []
    body = response.json()
    if wanted is not None:  # the step-up: exactly what would let the call through
        assert challenge_scope(response) == wanted
        assert body["error"] == "insufficient_scope" and body["scope"] == wanted
        assert response.headers["www-authenticate"].startswith("Bearer ")
        # RFC 9728 §5.1: where the client learns which server grants the step-up
        assert response.headers["www-authenticate"].endswith(
            ', resource_metadata="https://gateway.test/.well-known/oauth-protected-resource"'
        )
        step_up = await gw.client.post(path, json=call(tool), headers=bearer(mint(wanted)))
        assert step_up.status_code == 200
    else:  # no pattern: no scope would do, so no challenge invites the client to ask for one
        assert "www-authenticate" not in response.headers
        assert body == {
            "error": "access_denied",
            "error_description": "this tool may not be called on this route",
        }


async def test_the_routes_scopes_still_come_first(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    no_token = await gw.client.post("/mcp", json=call("read_file"))
    assert no_token.status_code == 401
    response = await gw.client.post("/mcp", json=call("read_file"), headers=bearer(mint("root")))
    assert response.status_code == 403
    assert challenge_scope(response) == "mcp:use"
    assert recorder.received == []


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, id="init"),
        pytest.param({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, id="tools-list"),
        pytest.param({"jsonrpc": "2.0", "method": "notifications/initialized"}, id="notification"),
        pytest.param({"jsonrpc": "2.0", "id": 3, "result": {}}, id="response"),
        pytest.param(
            {"jsonrpc": "2.0", "id": 4, "error": {"code": -1, "message": "no"}}, id="error"
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 5, "method": "prompts/get", "params": {"name": "delete_x"}},
            id="prompt-named-like-a-guarded-tool",
        ),
    ],
)
async def test_other_messages_need_the_routes_scopes_only(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint, message: dict[str, Any]
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    response = await gw.client.post("/mcp", json=message, headers=bearer(mint("mcp:use")))
    assert response.status_code in (200, 202)
    assert [json.loads(r.body) for r in recorder.received] == [message]
    refused = await gw.client.post("/mcp", json=message, headers=bearer(mint("root")))
    assert refused.status_code == 403 and challenge_scope(refused) == "mcp:use"


# --- what reaches the upstream ---------------------------------------------------------------


async def test_the_body_is_forwarded_byte_for_byte_with_its_length(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    body = (
        b' {"params" : {"arguments": {"q": "caf\\u00e9 \xe2\x98\x95", "n": 1.50e3},'
        b'\n\t"name": "read_file"}, "id": "a-1", "method": "tools/call", "jsonrpc": "2.0"}  \n'
    )

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length from the client
        for start in range(0, len(body), 10):
            yield body[start : start + 10]

    headers = bearer(mint("mcp:use"), Expect="100-continue", **{"Mcp-Session-Id": "s-1"})
    response = await gw.client.post("/mcp/", content=chunked(), headers=headers)
    assert response.status_code == 200
    (received,) = recorder.received
    assert received.body == body
    assert received.header("content-length") == [str(len(body))]
    assert received.header("transfer-encoding") == []
    assert received.header("expect") == []  # answered: the gateway has the body already
    assert received.header("mcp-session-id") == ["s-1"]
    assert received.method == "POST" and received.path == "/mcp/"


async def test_a_plain_route_is_not_read(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    response = await gw.client.post(
        "/plain", content=b"[not, json", headers=bearer(mint("mcp:use"))
    )
    assert response.status_code == 202
    assert recorder.received[0].body == b"[not, json"


async def test_server_sent_events_stream_through(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    headers = bearer(mint("mcp:use"), Accept="application/json, text/event-stream")
    for method, body in (("POST", json.dumps(call("stream_logs")).encode()), ("GET", None)):
        recorder.release.clear()
        request = gw.client.build_request(method, "/mcp", content=body, headers=headers)
        response = await gw.client.send(request, stream=True)
        try:
            assert response.status_code == 200, method
            assert response.headers["content-type"] == "text/event-stream"
            lines = response.aiter_lines()
            async with asyncio.timeout(PROMPT):
                # the first event arrives while the upstream still holds the second
                assert await anext(lines) == "event: message"
                assert await anext(lines) == 'data: {"n": 1}'
            recorder.release.set()
            rest = [line async for line in lines]
            assert 'data: {"n": 2}' in rest
        finally:
            await response.aclose()
    assert [r.method for r in recorder.received] == ["POST", "GET"]


# --- bodies refused before anything reaches the upstream ---------------------------------------


NAME = {"name": "read_file"}


@pytest.mark.parametrize(
    ("body", "headers", "description"),
    [
        pytest.param(b"", {}, "the body is not JSON (RFC 8259, in UTF-8)", id="empty"),
        pytest.param(b"{nope", {}, "the body is not JSON (RFC 8259, in UTF-8)", id="not-json"),
        pytest.param(
            b'{"jsonrpc": "2.0", "method": "x\xff"}',
            {},
            "the body is not JSON (RFC 8259, in UTF-8)",
            id="not-utf8",
        ),
        pytest.param(
            b'\xef\xbb\xbf{"jsonrpc": "2.0", "method": "x"}',
            {},
            "the body is not JSON (RFC 8259, in UTF-8)",
            id="bom",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": NaN, "method": "x"}',
            {},
            "the body is not JSON (RFC 8259, in UTF-8)",
            id="nan",
        ),
        pytest.param(
            b"[" * 100_000,
            {},
            "the body is not JSON (RFC 8259, in UTF-8)",
            id="deep-nesting",
        ),
        pytest.param(
            json.dumps([call("read_file")]).encode(),
            {},
            "a JSON-RPC batch is not accepted: send one message per request",
            id="batch",
        ),
        pytest.param(
            b'"tools/call"', {}, "the body is not a JSON-RPC message (a JSON object)", id="string"
        ),
        pytest.param(
            json.dumps({**call("read_file"), "jsonrpc": "1.0"}).encode(),
            {},
            'a JSON-RPC message needs "jsonrpc": "2.0"',
            id="wrong-jsonrpc",
        ),
        pytest.param(
            json.dumps({"id": 1, "method": "tools/call", "params": NAME}).encode(),
            {},
            'a JSON-RPC message needs "jsonrpc": "2.0"',
            id="no-jsonrpc",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1, "params": {"name": "read_file"}}',
            {},
            "a JSON-RPC message is a request or notification (with a method) or a response "
            "(with an id and one of result and error)",
            id="missing-method",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}}',
            {},
            "a JSON-RPC message is a request or notification (with a method) or a response "
            "(with an id and one of result and error)",
            id="result-and-error",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1, "method": 7}',
            {},
            "a JSON-RPC method is a string",
            id="method-not-string",
        ),
        pytest.param(
            json.dumps({**call("read_file"), "result": {}}).encode(),
            {},
            "a JSON-RPC message is a request or a response, not both",
            id="request-and-response",
        ),
        pytest.param(
            json.dumps({**call("read_file"), "id": True}).encode(),
            {},
            "a JSON-RPC id is a string, a number or null",
            id="id-bool",
        ),
        pytest.param(
            json.dumps({**call("read_file"), "params": "read_file"}).encode(),
            {},
            "JSON-RPC params are an object or an array",
            id="params-string",
        ),
        pytest.param(
            json.dumps(call(["read_file"])).encode(),
            {},
            "a tools/call needs params.name, a non-empty printable string",
            id="name-not-string",
        ),
        pytest.param(
            json.dumps({**call("x"), "params": {}}).encode(),
            {},
            "a tools/call needs params.name, a non-empty printable string",
            id="name-missing",
        ),
        pytest.param(
            json.dumps(call("")).encode(),
            {},
            "a tools/call needs params.name, a non-empty printable string",
            id="name-empty",
        ),
        pytest.param(
            json.dumps(call("read_file\u0000delete_all")).encode(),
            {},
            "a tools/call needs params.name, a non-empty printable string",
            id="name-nul",
        ),
        pytest.param(
            json.dumps(call("read_\u200bfile")).encode(),
            {},
            "a tools/call needs params.name, a non-empty printable string",
            id="name-invisible",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call",'
            b' "params": {"name": "read_\\ud800"}}',
            {},
            "a tools/call needs params.name, a non-empty printable string",
            id="name-lone-surrogate",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call",'
            b' "params": {"name": "read_file", "name": "delete_all"}}',
            {},
            "a JSON object in the body repeats a member name",
            id="repeated-name",
        ),
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "method": "tools/call",'
            b' "params": {"name": "delete_all"}}',
            {},
            "a JSON object in the body repeats a member name",
            id="repeated-method",
        ),
        pytest.param(
            json.dumps(call("read_file")).encode(),
            {"Mcp-Method": "tools/list"},
            "the Mcp-Method header does not match the body",
            id="mcp-method-mismatch",
        ),
        pytest.param(
            json.dumps(call("delete_all")).encode(),
            {"Mcp-Method": "tools/call", "Mcp-Name": "read_file"},
            "the Mcp-Name header does not match the body",
            id="mcp-name-mismatch",
        ),
        pytest.param(
            json.dumps(call("delete_all")).encode(),
            {"mcp_name": "read_file"},
            "the Mcp-Name header does not match the body",
            id="mcp-name-underscore",
        ),
        pytest.param(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode(),
            {"Mcp-Name": "read_file"},
            "the Mcp-Name header does not match the body",
            id="mcp-name-without-a-name",
        ),
        pytest.param(
            json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}).encode(),
            {"Mcp-Method": "tools/call"},
            "the Mcp-Method header does not match the body",
            id="mcp-method-on-a-response",
        ),
        pytest.param(
            json.dumps(call("read_file")).encode(),
            {"Mcp-Name": "=?base64?%%%?="},
            "Mcp-Name holds invalid base64 or UTF-8",
            id="mcp-name-bad-base64",
        ),
        pytest.param(
            json.dumps(call("read_file")).encode(),
            {"Mcp-Name": "=?base64?/w==?="},
            "Mcp-Name holds invalid base64 or UTF-8",
            id="mcp-name-base64-not-utf8",
        ),
        pytest.param(
            json.dumps(call("read_café")).encode(),
            {"Mcp-Name": "read_café".encode()},  # raw UTF-8: not a header value SEP-2243 allows
            "Mcp-Name must be visible ASCII (=?base64?...?= for the rest)",
            id="mcp-name-not-ascii",
        ),
        pytest.param(
            json.dumps(call("read_file")).encode(),
            {"Mcp-Name": "=?BASE64?cmVhZF9maWxl?="},
            "the Mcp-Name header does not match the body",
            id="mcp-name-sentinel-is-lower-case",
        ),
    ],
)
async def test_what_is_not_one_agreeing_json_rpc_message_is_400(
    gateway: Any,
    upstream: tuple[str, Recorder],
    mint: Mint,
    body: bytes,
    headers: dict[str, str | bytes],
    description: str,
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url).replace("mcp_max_body = 4096", "mcp_max_body = 200000"))
    response = await gw.client.post(
        "/mcp", content=body, headers=bearer(mint("mcp:use root"), **headers)
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": description}
    assert recorder.received == []


async def test_mcp_headers_that_agree_pass(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    token = mint("mcp:use")
    cases = [
        (call("read_file"), {"Mcp-Method": "tools/call", "Mcp-Name": "read_file"}),
        (call("read_café"), {"Mcp-Name": "=?base64?cmVhZF9jYWbDqQ==?="}),  # SEP-2243 base64
        (
            {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "file:///a"}},
            {"Mcp-Method": "resources/read", "Mcp-Name": "file:///a"},
        ),
        (
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"Mcp-Method": "notifications/initialized"},
        ),
    ]
    for message, headers in cases:
        response = await gw.client.post("/mcp", json=message, headers=bearer(token, **headers))
        assert response.status_code in (200, 202), headers
    assert len(recorder.received) == len(cases)
    assert recorder.received[0].header("mcp-name") == ["read_file"]


async def test_a_repeated_mcp_header_is_400(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    headers = [
        ("Authorization", f"Bearer {mint('mcp:use')}"),
        ("Mcp-Name", "read_file"),
        ("mcp-name", "read_file"),
    ]
    response = await gw.client.post("/mcp", json=call("read_file"), headers=headers)
    assert response.status_code == 400
    assert response.json()["error_description"] == "Mcp-Name is sent more than once"
    assert recorder.received == []


async def test_a_body_on_another_method_is_read_too(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    """An upstream that took a PUT's (or a GET's) body for a message would run it unchecked."""
    url, recorder = upstream
    gw = await gateway(config(url))
    token = mint("mcp:use")
    for method in ("PUT", "GET"):
        response = await gw.client.request(
            method, "/mcp", content=json.dumps(call("delete_all")), headers=bearer(token)
        )
        assert response.status_code == 403, method
    response = await gw.client.request("DELETE", "/mcp", headers=bearer(token))
    assert response.status_code == 200  # no body: the session's end passes as on any route
    assert [r.method for r in recorder.received] == ["DELETE"]


async def test_a_compressed_body_is_415(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    headers = bearer(mint("mcp:use"), **{"Content-Encoding": "gzip"})
    response = await gw.client.post("/mcp", content=b"\x1f\x8b\x08\x00", headers=headers)
    assert response.status_code == 415
    assert response.headers["accept-encoding"] == "identity"
    assert response.json()["error"] == "invalid_request"
    assert recorder.received == []


# --- size and time ----------------------------------------------------------------------------


async def exchange_raw(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) on a new connection; the response's status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        async with asyncio.timeout(PROMPT):
            status_line = await reader.readline()
            head_rest = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head_rest.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        return int(status_line.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()


async def test_a_declared_length_over_the_limit_is_413_at_once(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {mint('mcp:use')}\r\n"
        "Content-Type: application/json\r\nContent-Length: 4097\r\nExpect: 100-continue\r\n\r\n"
    )
    # not one byte of the body is sent: the answer must not wait for it
    status, body = await exchange_raw(gw.port, head)
    assert status == 413
    assert json.loads(body) == {
        "error": "invalid_request",
        "error_description": "an MCP message on this route is at most 4096 bytes",
    }
    assert recorder.received == []


async def test_a_body_growing_past_the_limit_is_413(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url))
    message = json.dumps(call("read_file", padding="x" * 5000)).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(message), 1000):
            yield message[start : start + 1000]

    response = await gw.client.post("/mcp", content=chunked(), headers=bearer(mint("mcp:use")))
    assert response.status_code == 413
    assert recorder.received == []
    exact = json.dumps(call("read_file", pad="x" * 10)).encode()
    exact = exact[:-1] + b" " * (4096 - len(exact)) + b"}"  # exactly the limit passes
    response = await gw.client.post("/mcp", content=exact, headers=bearer(mint("mcp:use")))
    assert response.status_code == 200
    assert recorder.received[0].body == exact


async def test_a_stalled_body_is_408(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint, access_log: LogPipe
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url), access_log=access_log.log)
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {mint('mcp:use')}\r\n"
        "Content-Length: 100\r\n\r\n"
    )
    status, body = await exchange_raw(gw.port, head, b'{"jsonrpc": "2.0",')
    assert status == 408
    assert json.loads(body)["error_description"] == "the request body did not arrive in time"
    entry = await asyncio.to_thread(access_log.entry)
    assert (entry["status"], entry["reason"], entry["bytes_in"]) == (
        408,
        "request_body_timeout",
        18,
    )
    assert recorder.received == []


async def test_a_client_leaving_mid_message_sends_nothing_upstream(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint, access_log: LogPipe
) -> None:
    url, recorder = upstream
    gw = await gateway(config(url), access_log=access_log.log)
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        f"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {mint('mcp:use')}\r\n"
        'Content-Length: 100\r\n\r\n{"jsonrpc": '.encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    entry = await asyncio.to_thread(access_log.entry)
    assert (entry["status"], entry["reason"]) == (499, "client_closed")
    assert recorder.received == []


# --- what the refusals say elsewhere ----------------------------------------------------------


async def test_a_refused_tool_is_logged_and_counted_as_tool_scope(
    gateway: Any, upstream: tuple[str, Recorder], mint: Mint, access_log: LogPipe
) -> None:
    url, _ = upstream
    gw = await gateway(config(url), access_log=access_log.log)
    token = mint("mcp:use", sub="alice", client_id="agent-1")
    for tool, status in (("delete_file", 403), ("list_files", 403), ("read_file", 200)):
        response = await gw.client.post("/mcp", json=call(tool), headers=bearer(token))
        assert response.status_code == status
    entries = await asyncio.to_thread(access_log.entries, 3)
    assert [(e["route"], e["status"], e["reason"], e["client_id"], e["sub"]) for e in entries] == [
        ("files", 403, "tool_scope", "agent-1", "alice"),
        ("files", 403, "tool_scope", "agent-1", "alice"),
        ("files", 200, None, "agent-1", "alice"),
    ]
    failures = {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(gw.proxy.metrics.render().decode())
        for sample in family.samples
        if sample.name == "gateway_token_failures_total"
    }
    assert failures == {"tool_scope": 2}


def test_the_rules_remembered_per_tool_name_stay_bounded_and_right() -> None:
    """Clients name the tools: what is remembered of them cannot grow without end."""
    route = RouteConfig(
        path="/mcp",
        upstream="http://127.0.0.1:9",
        mcp=True,
        mcp_tool_scopes=(("delete_*", (("admin",),)), ("*", ())),
    )
    guard = McpGuard.from_config(route)
    assert guard is not None
    for n in range(3 * DECIDED_TOOLS):
        name = f"delete_{n}" if n % 2 else f"read_{n}"
        rule = guard.rule(name)
        assert rule is not None and rule.pattern == ("delete_*" if n % 2 else "*"), name
    assert len(guard._decided) <= DECIDED_TOOLS
    with pytest.raises(ToolScopeRequired):
        guard.authorize("delete_0", frozenset())
    guard.authorize("read_0", frozenset())
