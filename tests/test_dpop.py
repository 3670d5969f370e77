"""The DPoP proof checker (RFC 9449 §4.3), with proofs made by joserfc: every algorithm it
takes, every way a proof is refused, the replay cache and the stateless nonces. Each proof
that must be refused is otherwise valid (signed by its key), so that each test fails when the
check it names is removed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import dpop
from gateway.config import DpopConfig
from gateway.dpop import Checker, ProofRefused
from tests.support.dpop import ALGORITHMS, ProofKey, b64json, b64url, new_key

URL = "https://issuer.example/oauth/token"
NOW = 1_800_000_000.0
LEEWAY = 5.0
SECRET = b"s" * 32


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def checker(clock: Clock | None = None, secret: bytes = SECRET, **config: Any) -> Checker:
    return Checker(DpopConfig(**config), LEEWAY, secret, clock=clock or Clock())


def refused(check: Checker, proof: str, url: str = URL, **kwargs: Any) -> ProofRefused:
    with pytest.raises(ProofRefused) as raised:
        check.check(proof, kwargs.pop("method", "POST"), url, **kwargs)
    return raised.value


@pytest.fixture(scope="module")
def es256() -> ProofKey:
    return ProofKey("ES256")


# --- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_each_algorithm_is_accepted_and_names_its_key(alg: str) -> None:
    key = ProofKey(alg)
    assert checker().check(key.proof(URL, iat=NOW), "POST", URL) == key.jkt


def test_a_remembered_header_still_has_its_claims_and_signature_checked(es256: ProofKey) -> None:
    check = checker()
    check.check(es256.proof(URL, iat=NOW), "POST", URL)  # the header is now remembered
    assert refused(check, es256.proof(URL, htm="GET", iat=NOW)).description == dpop.WRONG_REQUEST
    good = es256.proof(URL, iat=NOW)
    head, body, _ = good.split(".")
    other = es256.proof(URL, iat=NOW).split(".")[2]
    assert refused(check, f"{head}.{body}.{other}").description == dpop.BAD_SIGNATURE


@pytest.mark.parametrize(
    "htu",
    [
        pytest.param("HTTPS://ISSUER.EXAMPLE/oauth/token", id="scheme-and-host-case"),
        pytest.param("https://issuer.example:443/oauth/token", id="default-port"),
        pytest.param("https://Issuer.Example:443/oauth/%7etoken", id="percent-case"),
    ],
)
def test_htu_equal_modulo_case_and_default_port_is_accepted(es256: ProofKey, htu: str) -> None:
    url = "https://issuer.example/oauth/%7Etoken" if "%7" in htu else URL
    assert checker().check(es256.proof(htu, iat=NOW), "POST", url) == es256.jkt


def test_ath_of_the_token_is_accepted(es256: ProofKey) -> None:
    proof = es256.proof(URL, htm="GET", iat=NOW, access_token="tok.en.x")
    assert checker().check(proof, "GET", URL, access_token="tok.en.x") == es256.jkt


# --- the header ----------------------------------------------------------------------------------


def _header_cases() -> list[Any]:
    return [
        pytest.param({"typ": None}, id="typ-missing"),
        pytest.param({"typ": "JWT"}, id="typ-jwt"),
        pytest.param({"typ": "DPOP+JWT"}, id="typ-case"),
        pytest.param({"crit": ["exp"]}, id="crit"),
    ]


@pytest.mark.parametrize("changes", _header_cases())
def test_a_header_other_than_a_proofs_is_malformed(
    es256: ProofKey, changes: dict[str, Any]
) -> None:
    proof = es256.sign_raw(es256.header(**changes), es256.claims(URL, iat=NOW))
    assert refused(checker(), proof).description == dpop.MALFORMED


@pytest.mark.parametrize("alg", ["none", "HS256", "ES384", "Ed25519", None])
def test_an_algorithm_not_accepted_is_refused(es256: ProofKey, alg: str | None) -> None:
    # signed by the key, as ES256, under a header naming another algorithm
    header = es256.header(alg=alg)
    payload = b64json(es256.claims(URL, iat=NOW))
    real = es256.proof(URL, iat=NOW).split(".")[2]
    proof = f"{b64json(header)}.{payload}.{real}"
    assert refused(checker(), proof).description == dpop.UNSUPPORTED_KEY


@pytest.mark.parametrize(
    ("alg", "signer"),
    [
        pytest.param("RS256", "ES256", id="rs256-with-ec-key"),
        pytest.param("ES256", "EdDSA", id="es256-with-okp-key"),
        pytest.param("EdDSA", "PS256", id="eddsa-with-rsa-key"),
    ],
)
def test_an_algorithm_that_does_not_fit_the_key_is_refused(alg: str, signer: str) -> None:
    key = ProofKey(signer)
    proof = key.proof(URL, iat=NOW)
    head = b64json(key.header(alg=alg))
    assert refused(checker(), head + proof[proof.index(".") :]).description == dpop.UNSUPPORTED_KEY


def test_an_ec_key_of_another_curve_is_refused() -> None:
    key = ProofKey("ES256")
    jwk = {**key.jwk, "crv": "P-384"}
    proof = key.sign(key.header(jwk=jwk), json.dumps(key.claims(URL, iat=NOW)).encode())
    assert refused(checker(), proof).description == dpop.UNSUPPORTED_KEY


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_private_key_in_the_header_is_refused(alg: str) -> None:
    key = ProofKey(alg)
    private = key.key.as_dict(private=True)
    assert "d" in private
    proof = key.sign(key.header(jwk=private), json.dumps(key.claims(URL, iat=NOW)).encode())
    assert refused(checker(), proof).description == dpop.UNSUPPORTED_KEY


def test_a_private_member_alone_is_enough_to_refuse(es256: ProofKey) -> None:
    jwk = {**es256.jwk, "d": b64url(b"\x01" * 32)}  # not even the right one
    proof = es256.sign(es256.header(jwk=jwk), json.dumps(es256.claims(URL, iat=NOW)).encode())
    assert refused(checker(), proof).description == dpop.UNSUPPORTED_KEY


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_an_rsa_key_under_2048_bits_is_refused(alg: str) -> None:
    key = ProofKey(alg, new_key(alg, rsa_bits=1024))
    assert refused(checker(), key.proof(URL, iat=NOW)).description == dpop.UNSUPPORTED_KEY


def test_an_ec_point_off_the_curve_is_refused(es256: ProofKey) -> None:
    jwk = dict(es256.jwk)
    y = bytearray(dpop.b64url_decode(jwk["y"]))
    y[-1] ^= 1
    jwk["y"] = b64url(bytes(y))
    proof = es256.sign(es256.header(jwk=jwk), json.dumps(es256.claims(URL, iat=NOW)).encode())
    assert refused(checker(), proof).description == dpop.UNSUPPORTED_KEY


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param("a string", id="not-an-object"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": 1, "y": 2}, id="members-not-strings"),
        pytest.param({"kty": "oct", "k": "AAAA"}, id="symmetric"),
        pytest.param(None, id="missing"),
    ],
)
def test_a_jwk_that_is_not_a_public_key_is_refused(es256: ProofKey, jwk: Any) -> None:
    proof = es256.proof(URL, iat=NOW)
    head = b64json(es256.header(jwk=jwk)) if jwk is not None else b64json(es256.header(jwk=None))
    assert refused(checker(), head + proof[proof.index(".") :]).description == dpop.UNSUPPORTED_KEY


# --- the form -----------------------------------------------------------------------------------


def _signature_with(es256: ProofKey, char: str) -> str:
    """A valid proof whose signature segment holds ``char`` ("-" or "_")."""
    while True:
        proof = es256.proof(URL, iat=NOW)
        if char in proof.split(".")[2]:
            return proof


def test_base64_with_padding_is_refused(es256: ProofKey) -> None:
    proof = es256.proof(URL, iat=NOW)  # a 64-byte signature: 86 characters, "==" padding due
    assert len(proof.split(".")[2]) % 4 == 2
    assert refused(checker(), proof + "==").description == dpop.MALFORMED


@pytest.mark.parametrize(("url_safe", "standard"), [("-", "+"), ("_", "/")])
def test_standard_base64_characters_are_refused(
    es256: ProofKey, url_safe: str, standard: str
) -> None:
    proof = _signature_with(es256, url_safe)
    head, body, sig = proof.split(".")
    assert refused(checker(), f"{head}.{body}.{sig.replace(url_safe, standard)}").description == (
        dpop.MALFORMED
    )


def test_a_padded_header_is_refused(es256: ProofKey) -> None:
    header = b64json(es256.header())
    while len(header) % 4 == 0:  # make one that would need padding
        header = b64json(es256.header(pad="x" * (len(header) % 7 + 1)))
    padded = header + "=" * (-len(header) % 4)
    proof = es256.sign(es256.header(), json.dumps(es256.claims(URL, iat=NOW)).encode())
    assert refused(checker(), padded + proof[proof.index(".") :]).description == dpop.MALFORMED


@pytest.mark.parametrize("count", [1, 2, 4])
def test_anything_but_three_segments_is_malformed(es256: ProofKey, count: int) -> None:
    head, body, sig = es256.proof(URL, iat=NOW).split(".")
    proof = ".".join([head, body, sig, sig][:count])
    assert refused(checker(), proof).description == dpop.MALFORMED


def test_an_oversized_proof_is_refused(es256: ProofKey) -> None:
    proof = es256.proof(URL, iat=NOW, padding="x" * dpop.MAX_PROOF_LENGTH)
    assert refused(checker(), proof).description == dpop.MALFORMED
    # the same, a little under the bound, passes: the length is what is refused
    small = es256.proof(URL, iat=NOW, padding="x" * (dpop.MAX_PROOF_LENGTH // 2))
    assert checker().check(small, "POST", URL) == es256.jkt


@pytest.mark.parametrize("value", [[1, 2], "text", 7, None])
def test_a_header_that_is_not_an_object_is_malformed(es256: ProofKey, value: Any) -> None:
    proof = es256.sign_raw(value, es256.claims(URL, iat=NOW))
    assert refused(checker(), proof).description == dpop.MALFORMED


@pytest.mark.parametrize("value", [[1, 2], "text", 7, None])
def test_claims_that_are_not_an_object_are_malformed(es256: ProofKey, value: Any) -> None:
    proof = es256.sign(es256.header(), json.dumps(value).encode())
    assert refused(checker(), proof).description == dpop.MALFORMED


def test_segments_that_are_not_json_are_malformed(es256: ProofKey) -> None:
    head, body, sig = es256.proof(URL, iat=NOW).split(".")
    assert refused(checker(), f"{b64url(b'{nope')}.{body}.{sig}").description == dpop.MALFORMED
    assert refused(checker(), f"{head}.{b64url(b'{nope')}.{sig}").description == dpop.MALFORMED


# --- the claims -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"jti": None}, id="jti-missing"),
        pytest.param({"jti": 5}, id="jti-number"),
        pytest.param({"jti": ""}, id="jti-empty"),
        pytest.param({"jti": "j" * 257}, id="jti-too-long"),
        pytest.param({"htm": None}, id="htm-missing"),
        pytest.param({"htm": ["POST"]}, id="htm-list"),
        pytest.param({"htu": None}, id="htu-missing"),
        pytest.param({"htu": 1}, id="htu-number"),
        pytest.param({"iat": None}, id="iat-missing"),
        pytest.param({"iat": str(int(NOW))}, id="iat-string"),
        pytest.param({"iat": True}, id="iat-boolean"),
    ],
)
def test_missing_or_ill_typed_claims_are_malformed(
    es256: ProofKey, changes: dict[str, Any]
) -> None:
    claims = {"jti": "j-1", "htm": "POST", "htu": URL, "iat": int(NOW), **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    proof = es256.sign(es256.header(), json.dumps(claims).encode())
    assert refused(checker(), proof).description == dpop.MALFORMED


@pytest.mark.parametrize("htm", ["GET", "post", "PUT"])
def test_another_method_is_refused(es256: ProofKey, htm: str) -> None:
    assert refused(checker(), es256.proof(URL, htm=htm, iat=NOW)).description == dpop.WRONG_REQUEST


@pytest.mark.parametrize(
    "htu",
    [
        pytest.param("https://issuer.example/oauth/other", id="other-path"),
        pytest.param("https://issuer.example/OAUTH/token", id="path-case"),
        pytest.param("https://other.example/oauth/token", id="other-host"),
        pytest.param("http://issuer.example/oauth/token", id="other-scheme"),
        pytest.param("https://issuer.example:8443/oauth/token", id="other-port"),
        pytest.param(URL + "?a=1", id="query"),
        pytest.param(URL + "#top", id="fragment"),
        pytest.param(URL + "?", id="empty-query"),
        pytest.param("https://user@issuer.example/oauth/token", id="userinfo"),
        pytest.param("/oauth/token", id="relative"),
    ],
)
def test_another_url_is_refused(es256: ProofKey, htu: str) -> None:
    assert refused(checker(), es256.proof(htu, iat=NOW)).description == dpop.WRONG_REQUEST


def test_an_htu_with_a_query_is_refused_even_against_such_a_url(es256: ProofKey) -> None:
    """Neither is a URL a proof may name: they are not equal just because both are not."""
    proof = es256.proof(URL + "?a=1", iat=NOW)
    assert refused(checker(), proof, url=URL + "?b=2").description == dpop.WRONG_REQUEST
    # nor when equal: a query or fragment in htu is refused whatever it is compared with
    for odd in (URL + "?a=1", URL + "#f"):
        proof = es256.proof(odd, iat=NOW)
        assert refused(checker(), proof, url=odd).description == dpop.WRONG_REQUEST


@pytest.mark.parametrize(
    ("iat", "accepted"),
    [
        pytest.param(NOW - 60 - LEEWAY + 1, True, id="oldest-accepted"),
        pytest.param(NOW - 60 - LEEWAY - 1, False, id="too-old"),
        pytest.param(NOW + LEEWAY - 1, True, id="ahead-within-leeway"),
        pytest.param(NOW + LEEWAY + 1, False, id="too-far-ahead"),
    ],
)
def test_iat_must_be_within_the_window(es256: ProofKey, iat: float, accepted: bool) -> None:
    proof = es256.proof(URL, iat=iat)
    if accepted:
        assert checker().check(proof, "POST", URL) == es256.jkt
    else:
        assert refused(checker(), proof).description == dpop.STALE


def test_a_proof_goes_stale_as_the_clock_moves(es256: ProofKey) -> None:
    clock = Clock()
    check = checker(clock, proof_max_age=10)
    proof = es256.proof(URL, iat=NOW)
    clock.now = NOW + 10 + LEEWAY + 1
    assert refused(check, proof).description == dpop.STALE


def test_a_wrong_ath_is_refused(es256: ProofKey) -> None:
    proof = es256.proof(URL, htm="GET", iat=NOW, access_token="another.token")
    assert refused(checker(), proof, method="GET", access_token="the.token").description == (
        dpop.WRONG_TOKEN
    )


def test_a_missing_ath_is_refused_when_a_token_is_given(es256: ProofKey) -> None:
    proof = es256.proof(URL, htm="GET", iat=NOW)
    assert refused(checker(), proof, method="GET", access_token="the.token").description == (
        dpop.WRONG_TOKEN
    )


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_bad_signature_is_refused(alg: str) -> None:
    key = ProofKey(alg)
    head, body, sig = key.proof(URL, iat=NOW).split(".")
    flipped = bytearray(dpop.b64url_decode(sig))
    flipped[len(flipped) // 2] ^= 1
    assert refused(checker(), f"{head}.{body}.{b64url(bytes(flipped))}").description == (
        dpop.BAD_SIGNATURE
    )


def test_a_signature_by_another_key_is_refused(es256: ProofKey) -> None:
    other = ProofKey("ES256")
    claims = json.dumps(es256.claims(URL, iat=NOW)).encode()
    proof = other.sign(es256.header(), claims)  # names es256's key, signed by another
    assert refused(checker(), proof).description == dpop.BAD_SIGNATURE


def test_an_es256_signature_of_the_wrong_length_is_refused(es256: ProofKey) -> None:
    head, body, sig = es256.proof(URL, iat=NOW).split(".")
    longer = b64url(dpop.b64url_decode(sig) + b"\x00")
    assert refused(checker(), f"{head}.{body}.{longer}").description == dpop.BAD_SIGNATURE


# --- replays ----------------------------------------------------------------------------------


def test_a_proof_used_twice_is_refused_the_second_time(es256: ProofKey) -> None:
    check = checker()
    proof = es256.proof(URL, iat=NOW)
    assert check.check(proof, "POST", URL) == es256.jkt
    assert refused(check, proof).description == dpop.REPLAYED


def test_a_new_proof_with_a_used_jti_is_refused(es256: ProofKey) -> None:
    check = checker()
    check.check(es256.proof(URL, iat=NOW, jti="same"), "POST", URL)
    assert refused(check, es256.proof(URL, iat=NOW - 1, jti="same")).description == dpop.REPLAYED


def test_the_same_jti_under_another_key_is_accepted(es256: ProofKey) -> None:
    check = checker()
    other = ProofKey("ES256")
    check.check(es256.proof(URL, iat=NOW, jti="same"), "POST", URL)
    assert check.check(other.proof(URL, iat=NOW, jti="same"), "POST", URL) == other.jkt


def test_a_refused_proof_does_not_use_up_its_jti(es256: ProofKey) -> None:
    check = checker()
    assert refused(check, es256.proof(URL, htm="GET", iat=NOW, jti="j")).description == (
        dpop.WRONG_REQUEST
    )
    assert check.check(es256.proof(URL, iat=NOW, jti="j"), "POST", URL) == es256.jkt


def test_the_replay_cache_is_bounded_forgetting_the_oldest_first(es256: ProofKey) -> None:
    check = checker(replay_cache_size=2)
    oldest = es256.proof(URL, iat=NOW - 30)
    middle = es256.proof(URL, iat=NOW - 20)
    newest = es256.proof(URL, iat=NOW - 10)
    for proof in (oldest, middle, newest):
        check.check(proof, "POST", URL)
    assert len(check.replays) == 2
    assert check.check(oldest, "POST", URL) == es256.jkt  # forgotten, so taken again
    assert refused(check, newest).description == dpop.REPLAYED


def test_without_the_bound_every_proof_is_remembered(es256: ProofKey) -> None:
    check = checker(replay_cache_size=3)
    oldest = es256.proof(URL, iat=NOW - 30)
    for proof in (oldest, es256.proof(URL, iat=NOW - 20), es256.proof(URL, iat=NOW - 10)):
        check.check(proof, "POST", URL)
    assert refused(check, oldest).description == dpop.REPLAYED


def test_a_proof_is_forgotten_once_its_window_has_closed(es256: ProofKey) -> None:
    clock = Clock()
    check = checker(clock)
    check.check(es256.proof(URL, iat=NOW), "POST", URL)
    assert len(check.replays) == 1
    clock.now = NOW + 60 + LEEWAY + 1
    check.check(es256.proof(URL, iat=clock.now), "POST", URL)
    assert len(check.replays) == 1


# --- nonces -----------------------------------------------------------------------------------


def test_without_nonces_there_is_no_nonce() -> None:
    assert checker().nonce() is None


def test_nonces_on_a_proof_without_one_needs_one(es256: ProofKey) -> None:
    error = refused(checker(nonces=True), es256.proof(URL, iat=NOW))
    assert (error.error, error.description) == ("use_dpop_nonce", dpop.NONCE)


@pytest.mark.parametrize("nonce", ["made-up", "", 17])
def test_nonces_on_a_wrong_nonce_is_refused(es256: ProofKey, nonce: Any) -> None:
    error = refused(checker(nonces=True), es256.proof(URL, iat=NOW, nonce=nonce))
    assert error.error == "use_dpop_nonce"


def test_nonces_on_the_current_nonce_is_accepted(es256: ProofKey) -> None:
    check = checker(nonces=True)
    nonce = check.nonce()
    assert isinstance(nonce, str) and len(nonce) >= 32
    assert check.check(es256.proof(URL, iat=NOW, nonce=nonce), "POST", URL) == es256.jkt


def test_nonces_on_the_previous_steps_nonce_is_accepted_not_an_older_one(
    es256: ProofKey,
) -> None:
    clock = Clock(NOW - NOW % 60)  # the start of a step
    check = checker(clock, nonces=True, nonce_lifetime=60)
    nonce = check.nonce()
    clock.now += 60  # the next step: the nonce is the previous one's
    assert check.nonce() != nonce
    proof = es256.proof(URL, iat=clock.now, nonce=nonce)
    assert check.check(proof, "POST", URL) == es256.jkt
    clock.now += 60  # two steps on
    error = refused(check, es256.proof(URL, iat=clock.now, nonce=nonce))
    assert error.error == "use_dpop_nonce"


def test_nonces_from_the_same_secret_agree(es256: ProofKey) -> None:
    a, b = checker(nonces=True), checker(nonces=True)
    assert a.nonce() == b.nonce()
    assert b.check(es256.proof(URL, iat=NOW, nonce=a.nonce()), "POST", URL) == es256.jkt


def test_nonces_from_another_secret_are_refused(es256: ProofKey) -> None:
    a, b = checker(nonces=True), checker(nonces=True, secret=b"t" * 32)
    assert a.nonce() != b.nonce()
    assert refused(b, es256.proof(URL, iat=NOW, nonce=a.nonce())).error == "use_dpop_nonce"


def test_process_scoped_nonces_are_accepted_only_where_they_were_made(es256: ProofKey) -> None:
    """``nonce_scope = "process"``: another process with the same secret refuses them, so a
    proof replayed to it is refused however fresh; the one that made it accepts them."""
    a, b = checker(nonces=True, nonce_scope="process"), checker(nonces=True, nonce_scope="process")
    assert a.nonce() != b.nonce()
    assert refused(b, es256.proof(URL, iat=NOW, nonce=a.nonce())).error == "use_dpop_nonce"
    assert a.check(es256.proof(URL, iat=NOW, nonce=a.nonce()), "POST", URL) == es256.jkt
    shared = checker(nonces=True)
    assert shared.nonce() not in (a.nonce(), b.nonce())


def test_the_nonce_is_checked_before_the_proof_is_remembered(es256: ProofKey) -> None:
    """A proof refused for its nonce can be sent again with one (a new jti is not needed)."""
    check = checker(nonces=True)
    refused(check, es256.proof(URL, iat=NOW, jti="j"))
    assert check.check(es256.proof(URL, iat=NOW, jti="j", nonce=check.nonce()), "POST", URL)


@pytest.mark.parametrize("segment", [0, 1], ids=["header", "claims"])
def test_json_nested_past_the_recursion_limit_is_malformed(es256: ProofKey, segment: int) -> None:
    parts = es256.proof(URL, iat=NOW).split(".")
    parts[segment] = b64url(b"[" * 2500 + b"]" * 2500)
    assert refused(checker(), ".".join(parts)).description == dpop.MALFORMED


# --- what the refusals say ---------------------------------------------------------------------


def test_reasons_are_one_word_each() -> None:
    descriptions = [
        dpop.MALFORMED,
        dpop.UNSUPPORTED_KEY,
        dpop.BAD_SIGNATURE,
        dpop.WRONG_REQUEST,
        dpop.WRONG_TOKEN,
        dpop.STALE,
        dpop.REPLAYED,
        dpop.NONCE,
    ]
    reasons = {ProofRefused(d).reason for d in descriptions}
    assert len(reasons) == len(descriptions)
    assert all(r.startswith("dpop_") and " " not in r for r in reasons)
