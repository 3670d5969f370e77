"""``gateway.bearer.credentials``: the one reader of the ``Authorization`` header (RFC 6750
§2.1 and §3.1, RFC 9449 §7), for every protected resource of the gateway."""

from __future__ import annotations

import pytest

from gateway.bearer import credentials
from gateway.dpop_challenges import (
    BearerRefused,
    DpopInvalidToken,
    DpopRepeatedCredentials,
    DpopTokenRequired,
    RepeatedCredentials,
)
from gateway.errors import GatewayError, InvalidToken, MissingToken


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        pytest.param(["Bearer abc"], ("bearer", "abc"), id="bearer"),
        pytest.param(["bEaReR abc"], ("bearer", "abc"), id="bearer-any-case"),
        pytest.param(["  Bearer   abc  "], ("bearer", "abc"), id="bearer-spaces"),
        pytest.param(["DPoP abc"], ("dpop", "abc"), id="dpop"),
        pytest.param(["dpop abc"], ("dpop", "abc"), id="dpop-any-case"),
    ],
)
def test_the_scheme_and_the_token(authorization, expected):
    assert credentials(authorization) == expected


@pytest.mark.parametrize(
    ("authorization", "proofs", "options", "refusal"),
    [
        pytest.param([], (), {}, MissingToken, id="none"),
        pytest.param([], (), {"dpop_required": True}, DpopTokenRequired, id="none-required"),
        pytest.param(["Basic YTpi"], (), {}, MissingToken, id="other-scheme"),
        pytest.param(["Bearer"], (), {}, InvalidToken, id="empty-bearer"),
        pytest.param(["Bearer   "], (), {}, InvalidToken, id="blank-bearer"),
        pytest.param(["DPoP "], (), {}, DpopInvalidToken, id="empty-dpop"),
        pytest.param(["DPoP abc"], (), {"dpop": False}, MissingToken, id="dpop-not-taken"),
        pytest.param(["Bearer abc"], (), {"dpop_required": True}, BearerRefused, id="bearer-req"),
        pytest.param(["Bearer"], (), {"dpop_required": True}, BearerRefused, id="empty-refused"),
        pytest.param(["Bearer a"] * 2, (), {}, RepeatedCredentials, id="two-bearer"),
        pytest.param(["Bearer a", "DPoP a"], (), {}, DpopRepeatedCredentials, id="two-one-dpop"),
        pytest.param(
            ["Bearer a", "DPoP a"], (), {"dpop": False}, RepeatedCredentials, id="two-no-dpop"
        ),
        pytest.param(["DPoP a"], ("p", "q"), {}, DpopRepeatedCredentials, id="two-proofs"),
        pytest.param(["Bearer a"] * 2, ("p",), {}, DpopRepeatedCredentials, id="two-and-proof"),
        pytest.param(
            ["Bearer a"] * 2, (), {"dpop_required": True}, DpopRepeatedCredentials, id="two-req"
        ),
    ],
)
def test_refusals(authorization, proofs, options, refusal):
    with pytest.raises(GatewayError) as raised:
        credentials(authorization, proofs, **options)
    assert type(raised.value) is refusal


def test_two_headers_are_invalid_request_never_a_guess():
    """RFC 6750 §3.1: a repeated parameter is ``invalid_request``, 400."""
    with pytest.raises(RepeatedCredentials) as raised:
        credentials(["Bearer a", "Bearer b"])
    assert (raised.value.status_code, raised.value.error) == (400, "invalid_request")
