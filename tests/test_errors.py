"""``GatewayError.reason``: the short fixed word that access logs and metric labels carry.

A label must have bounded cardinality, so every ``InvalidToken`` the code raises must be built
from a literal description: a description made from request data would make a new label per
request (and could carry the token into a log line)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import gateway
from gateway.errors import (
    InsufficientScope,
    InvalidMcpMessage,
    InvalidToken,
    McpBodyTimeout,
    McpContentEncoding,
    McpMessageTooLarge,
    McpUnchecked,
    MethodNotAllowed,
    MissingToken,
    RouteNotFound,
    StorageUnavailable,
    ToolNotAllowed,
    ToolScopeRequired,
)

WORD = re.compile(r"^[a-z_]+$")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (MissingToken(), "missing_token"),
        (InvalidToken("token expired"), "token_expired"),
        (InvalidToken("bad signature"), "bad_signature"),
        (InvalidToken(), "invalid_token"),
        (InsufficientScope("read"), "insufficient_scope"),
        (RouteNotFound(), "not_found"),
        (MethodNotAllowed(["GET"]), "method_not_allowed"),
        (StorageUnavailable(), "temporarily_unavailable"),
        (ToolScopeRequired("files:admin"), "tool_scope"),
        (ToolNotAllowed(), "tool_scope"),
        (InvalidMcpMessage("a JSON-RPC method is a string"), "invalid_mcp_message"),
        (McpMessageTooLarge(4096), "content_too_large"),
        (McpContentEncoding(), "unsupported_content_encoding"),
        (McpBodyTimeout(), "request_body_timeout"),
        (McpUnchecked(), "mcp_unchecked"),
    ],
)
def test_reason_is_a_fixed_word(error, reason):
    assert error.reason == reason


def _invalid_token_arguments() -> list[tuple[str, ast.expr]]:
    found = []
    for path in Path(gateway.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "InvalidToken"
            ):
                found += [(f"{path.name}:{node.lineno}", arg) for arg in node.args]
    return found


def test_every_invalid_token_raised_has_a_literal_description():
    arguments = _invalid_token_arguments()
    assert len(arguments) > 10  # the validator's and the proxy's
    for where, arg in arguments:
        assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), where
        assert WORD.match(InvalidToken(arg.value).reason), where
