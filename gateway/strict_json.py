"""JSON read strictly, for every body a client hands the gateway whole: an MCP message, an RFC
7591 registration, a Client ID Metadata Document.

RFC 8259 §4 leaves a repeated member name to the reader ("the names within an object SHOULD be
unique"): parsers disagree on which value counts, so a document could say one thing to us and
another to the next reader. It is refused, as are ``NaN`` and ``Infinity`` (not JSON, though
Python's decoder takes them), text not in UTF-8 (§8.1) and nesting too deep to parse.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn


class RepeatedMember(ValueError):
    """An object names a member twice."""


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise RepeatedMember("a JSON object repeats a member name")
    return members


def _not_a_number(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_members, parse_constant=_not_a_number)


def loads(data: bytes) -> Any:
    """The value ``data`` holds; ``RepeatedMember``, or ``ValueError`` for anything else that
    is not JSON in UTF-8."""
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deep") from None
