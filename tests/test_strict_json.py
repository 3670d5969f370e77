"""The one strict JSON reader of bodies clients hand the gateway whole (MCP messages,
registrations, metadata documents)."""

from __future__ import annotations

import pytest

from gateway import strict_json


def test_json_is_read() -> None:
    assert strict_json.loads(b'{"a": [1, 2.5, "\xc3\xa9", null, true]}') == {
        "a": [1, 2.5, "é", None, True]
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"a": 1, "a": 2}', id="top-level"),
        pytest.param(b'{"a": {"b": 1, "b": 1}}', id="nested-same-value"),
        pytest.param(b'[{"x": 1}, {"y": 1, "y": 2}]', id="in-an-array"),
    ],
)
def test_a_repeated_member_is_refused_as_such(body: bytes) -> None:
    with pytest.raises(strict_json.RepeatedMember):
        strict_json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"a": NaN}', id="nan"),
        pytest.param(b"[Infinity]", id="infinity"),
        pytest.param(b"-Infinity", id="minus-infinity"),
        pytest.param(b'{"a": "\xff"}', id="not-utf-8"),
        pytest.param(b"\xef\xbb\xbf{}", id="bom"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="too-deep"),
        pytest.param(b'{"a": 1', id="cut-short"),
        pytest.param(b"", id="empty"),
    ],
)
def test_what_is_not_json_in_utf_8_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError) as raised:
        strict_json.loads(body)
    assert not isinstance(raised.value, strict_json.RepeatedMember)
