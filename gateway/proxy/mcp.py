"""MCP messages at the proxy: an ``mcp = true`` route reads each one, and decides on its tool.

The Model Context Protocol's streamable HTTP transport sends one JSON-RPC 2.0 message per
``POST``. On an ``mcp = true`` route the proxy reads that body whole before anything reaches the
upstream (any request with a body, whatever its method: a server that took it for a message
would otherwise run an unchecked call), then forwards the very bytes it read, with their
``Content-Length``. In order:

1. ``Content-Encoding`` other than ``identity``: 415 (a compressed body cannot be read);
2. a ``Content-Length`` over ``mcp_max_body``: 413 at once; a body growing past it: 413;
3. the body: UTF-8 JSON (RFC 8259), where a repeated member name (parsers differ on which of
   the two wins), ``NaN`` or ``Infinity`` refuse it: no upstream may read another message
   than the one checked. Then one JSON-RPC 2.0 object (§4, §5): ``"jsonrpc": "2.0"``; a
   request or notification with a string ``method`` (``params`` an object or an array), or a
   response with an ``id`` and exactly one of ``result`` and ``error``; an ``id``, when
   present, a string, a number or null. A batch (an array) is refused: MCP sends one message
   per request since its 2025-06-18 revision. All these are 400;
4. ``Mcp-Method`` and ``Mcp-Name`` (MCP SEP-2243), when sent, in any case and with ``_`` for
   ``-`` (as identity headers are): each at most once, visible ASCII, decoded from the
   ``=?base64?...?=`` form, and equal to the body's ``method`` and to the value the method names
   (``params.name`` for ``tools/call`` and ``prompts/get``, ``params.uri`` for ``resources/*``,
   ``params.taskId`` for ``tasks/*``, else ``params.name``); else 400. An upstream that routes
   on them is never told one thing while the gateway checked another;
5. a ``tools/call``: ``params.name`` must be a non-empty string of printable characters (no
   control or invisible ones an upstream might cut or fold), else 400. It is matched against
   the route's ``mcp_tool_scopes`` in file order (``fnmatch.fnmatchcase``): the first match's
   scope sets apply on top of the route's, any one set sufficing (403 ``insufficient_scope``
   naming the route's first set and the tool's first set together, what a step-up must ask
   for); no match is refused (403 ``access_denied``, no challenge: no scope would do).

Every other method (``initialize``, ``tools/list``, notifications, responses) needs the route's
scopes only. A request without a body (the ``GET`` stream, ``DELETE``) passes as on any route,
and so do responses of any type (``text/event-stream`` included).
"""

from __future__ import annotations

import base64
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import strict_json
from gateway.config import RouteConfig
from gateway.errors import (
    InvalidMcpMessage,
    McpContentEncoding,
    McpMessageTooLarge,
    ToolNotAllowed,
    ToolScopeRequired,
)
from gateway.proxy.headers import UNDERSCORE, Header

TOOLS_CALL = "tools/call"
#: where ``Mcp-Name`` comes from in a request's ``params`` (SEP-2243), by method
NAMED_BY = {
    TOOLS_CALL: "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "resources/unsubscribe": "uri",
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
#: methods that carry no MCP message in the transport (the stream, the session's end, CORS)
BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
MCP_METHOD = b"mcp-method"
MCP_NAME = b"mcp-name"
_CONTENT_LENGTH = b"content-length"
_CONTENT_ENCODING = b"content-encoding"
#: SEP-2243 §Value Encoding: visible ASCII, space and tab
_HEADER_VALUE = re.compile(rb"[\x20-\x7e\t]*")
_BASE64_PREFIX, _BASE64_SUFFIX = "=?base64?", "?="
#: tool names whose rule is remembered; past it, the memory starts again
DECIDED_TOOLS = 1024


@dataclass(frozen=True, slots=True)
class McpMessage:
    """What the proxy decides on in one message."""

    #: None for a response
    method: str | None
    #: the value ``Mcp-Name`` must equal (``NAMED_BY``), None when the body has none
    name: str | None

    @property
    def tool(self) -> str | None:
        """The tool a ``tools/call`` names (checked: a printable, non-empty string)."""
        return self.name if self.method == TOOLS_CALL else None


def _is_id(value: Any) -> bool:
    """JSON-RPC 2.0 §4: "a String, Number, or NULL value if included"."""
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def read_message(body: bytes) -> McpMessage:
    """The one JSON-RPC 2.0 message of ``body``; ``InvalidMcpMessage`` naming what is wrong."""
    try:
        value = strict_json.loads(body)
    except strict_json.RepeatedMember:
        raise InvalidMcpMessage("a JSON object in the body repeats a member name") from None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        raise InvalidMcpMessage("the body is not JSON (RFC 8259, in UTF-8)") from None
    if isinstance(value, list):
        raise InvalidMcpMessage("a JSON-RPC batch is not accepted: send one message per request")
    if not isinstance(value, dict):
        raise InvalidMcpMessage("the body is not a JSON-RPC message (a JSON object)")
    if value.get("jsonrpc") != "2.0":
        raise InvalidMcpMessage('a JSON-RPC message needs "jsonrpc": "2.0"')
    if "id" in value and not _is_id(value["id"]):
        raise InvalidMcpMessage("a JSON-RPC id is a string, a number or null")
    if "method" not in value:
        if "id" not in value or ("result" in value) == ("error" in value):
            raise InvalidMcpMessage(
                "a JSON-RPC message is a request or notification (with a method) or a "
                "response (with an id and one of result and error)"
            )
        return McpMessage(None, None)
    method = value["method"]
    if not isinstance(method, str):
        raise InvalidMcpMessage("a JSON-RPC method is a string")
    if "result" in value or "error" in value:
        raise InvalidMcpMessage("a JSON-RPC message is a request or a response, not both")
    params = value.get("params")
    if "params" in value and not isinstance(params, dict | list):
        raise InvalidMcpMessage("JSON-RPC params are an object or an array")
    named = params.get(NAMED_BY.get(method, "name")) if isinstance(params, dict) else None
    if method == TOOLS_CALL and not (isinstance(named, str) and named and named.isprintable()):
        raise InvalidMcpMessage("a tools/call needs params.name, a non-empty printable string")
    return McpMessage(method, named if isinstance(named, str) else None)


def _header_value(value: bytes, name: str) -> str:
    """A SEP-2243 header's value, decoded from ``=?base64?...?=`` (lower case only) if so."""
    if not _HEADER_VALUE.fullmatch(value):
        raise InvalidMcpMessage(f"{name} must be visible ASCII (=?base64?...?= for the rest)")
    text = value.decode("ascii")
    prefix, suffix = _BASE64_PREFIX, _BASE64_SUFFIX
    if len(text) >= len(prefix) + len(suffix) and text.startswith(prefix) and text.endswith(suffix):
        try:
            return base64.b64decode(text[len(prefix) : -len(suffix)], validate=True).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError
            raise InvalidMcpMessage(f"{name} holds invalid base64 or UTF-8") from None
    return text


def check_headers(message: McpMessage, headers: list[Header]) -> None:
    """Raise ``InvalidMcpMessage`` unless ``Mcp-Method`` / ``Mcp-Name`` agree with the body."""
    method: bytes | None = None
    name: bytes | None = None
    for key, value in headers:
        if UNDERSCORE in key:
            key = key.replace(b"_", b"-")
        if key == MCP_METHOD:
            if method is not None:
                raise InvalidMcpMessage("Mcp-Method is sent more than once")
            method = value
        elif key == MCP_NAME:
            if name is not None:
                raise InvalidMcpMessage("Mcp-Name is sent more than once")
            name = value
    if method is not None and _header_value(method, "Mcp-Method") != message.method:
        raise InvalidMcpMessage("the Mcp-Method header does not match the body")
    if name is not None and _header_value(name, "Mcp-Name") != message.name:
        raise InvalidMcpMessage("the Mcp-Name header does not match the body")


@dataclass(frozen=True, slots=True)
class ToolRule:
    """One ``mcp_tool_scopes`` entry, compiled."""

    pattern: str
    matches: Callable[[str], object]
    #: alternatives, as a route's: any one set does; none at all: the route's scopes suffice
    scope_sets: tuple[frozenset[str], ...]
    #: the challenge's ``scope`` when the token falls short: the route's first set and this
    #: rule's first set, in that order, each scope once
    challenge: str


class McpGuard:
    """An ``mcp = true`` route's rules, built once when the route table is."""

    __slots__ = ("_decided", "max_body", "rules")

    def __init__(self, max_body: int, rules: tuple[ToolRule, ...]) -> None:
        self.max_body = max_body
        self.rules = rules
        #: tool name -> its rule, for the names seen lately (clients name them: bounded)
        self._decided: dict[str, ToolRule | None] = {}

    @classmethod
    def from_config(cls, config: RouteConfig) -> McpGuard | None:
        """The route's guard; None for a route without ``mcp = true``."""
        if not config.mcp:
            return None
        first = config.scopes[0] if config.scopes else ()
        rules = tuple(
            ToolRule(
                pattern,
                re.compile(fnmatch.translate(pattern)).match,  # fnmatchcase, compiled once
                tuple(frozenset(s) for s in sets),
                " ".join(dict.fromkeys((*first, *(sets[0] if sets else ())))),
            )
            for pattern, sets in config.mcp_tool_scopes
        )
        return cls(config.mcp_max_body, rules)

    def check_framing(self, headers: list[Header]) -> None:
        """Before the body is read: 415 for a content coding, 413 for a declared length over
        the limit (the client waiting on ``Expect: 100-continue`` sends nothing)."""
        for name, value in headers:
            if name == _CONTENT_LENGTH:
                value = value.strip()
                if value.isdigit() and int(value) > self.max_body:
                    raise McpMessageTooLarge(self.max_body)
            elif name == _CONTENT_ENCODING and value.strip().lower() not in (b"", b"identity"):
                raise McpContentEncoding()

    def read(self, body: bytes, headers: list[Header]) -> McpMessage:
        """The message of a body read whole, checked with the headers that describe it."""
        message = read_message(body)
        check_headers(message, headers)
        return message

    def rule(self, tool: str) -> ToolRule | None:
        """The first rule whose pattern matches ``tool``, in file order."""
        try:
            return self._decided[tool]
        except KeyError:
            pass
        found = next((rule for rule in self.rules if rule.matches(tool)), None)
        if len(self._decided) >= DECIDED_TOOLS:
            self._decided.clear()
        self._decided[tool] = found
        return found

    def authorize(self, tool: str, scopes: frozenset[str]) -> None:
        """Raise unless a token granting ``scopes`` may call
        ``tool``; the route's own scopes are checked already."""
        rule = self.rule(tool)
        if rule is None:
            raise ToolNotAllowed()
        if rule.scope_sets and not any(s <= scopes for s in rule.scope_sets):
            raise ToolScopeRequired(rule.challenge)
