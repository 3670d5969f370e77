"""DPoP proofs (RFC 9449): the one checker of §4.3, used by the token endpoint and by the
decision core (the proxy and ``/decisions``), with the replay cache and the nonce source beside
it.

A proof is a compact JWS the client makes for each request with a key it keeps: its header
carries the public key (``jwk``), its claims the request (``htm``, ``htu``), a unique ``jti``,
its time (``iat``), at a resource the hash of the access token (``ath``) and, when the server
demands them, the server's ``nonce``. ``Checker.check`` returns the key's RFC 7638 thumbprint
(``jkt``): the token endpoint binds the tokens it issues to it (``cnf.jkt``), a resource
compares it with the token's.

Why not a JOSE library: a proof differs on every request, so its signature cannot be remembered
the way an access token's is, and the issue's budget is the verification itself plus a few
microseconds. What a client repeats is remembered: the header segment (its ``typ``, ``alg`` and
``jwk``), parsed once into the imported key and its thumbprint. The signature, ``jti``, ``iat``
and everything else of the claims are checked every time. The tests make proofs with joserfc.

Replays: ``jti``s are remembered per process (``ReplayCache``) for the proof's window; across
workers and replicas, a replay inside the window is stopped only with nonces on
(``[dpop] nonces``): a nonce is an HMAC over a time step (``NonceSource``), derived from
``keys/session.key``, so every replica makes and accepts the same ones without talking.
"""

from __future__ import annotations

import binascii
import hashlib
import heapq
import hmac
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.config import PROOF_ALGORITHMS, DpopConfig

#: the media type of a proof's header (RFC 9449 §4.2)
PROOF_TYPE = "dpop+jwt"
#: what a proof, as one header value, may weigh: a 4096-bit RSA key and its signature fit
MAX_PROOF_LENGTH = 8192
#: header segments remembered (parsed key and thumbprint); past it the memory starts over
MAX_REMEMBERED_KEYS = 4096
#: the members of a private JWK (RFC 7518 §6.2.2, §6.3.2, §6.4): a public key has none
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHA256 = hashes.SHA256()
_ECDSA = ec.ECDSA(_SHA256)
_PKCS1 = padding.PKCS1v15()
_PSS = padding.PSS(mgf=padding.MGF1(_SHA256), salt_length=32)


class ProofRefused(Exception):
    """A proof not accepted: ``error`` is ``invalid_dpop_proof``, or ``use_dpop_nonce`` when
    only a current nonce is missing; ``description`` is one of a few fixed texts (never from
    the proof), ``reason`` the same as one word, a metric label of bounded cardinality."""

    def __init__(self, description: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    @property
    def reason(self) -> str:
        return "dpop_" + self.description.removeprefix("DPoP proof ").replace(" ", "_")


MALFORMED = "DPoP proof is malformed"
UNSUPPORTED_KEY = "DPoP proof key or algorithm is not accepted"
BAD_SIGNATURE = "DPoP proof has a bad signature"
WRONG_REQUEST = "DPoP proof is for another request"
WRONG_TOKEN = "DPoP proof is for another access token"
STALE = "DPoP proof is outside its time window"
REPLAYED = "DPoP proof was used before"
NONCE = "DPoP proof needs a current server nonce"


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2): any other character is refused."""
    if len(text) % 4 == 1 or not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    padded = (text + "=" * (-len(text) % 4)).encode("ascii").translate(_TO_STANDARD)
    return binascii.a2b_base64(padded, strict_mode=True)


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_JSON = json.JSONDecoder()


def b64url(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def token_hash(access_token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url of the SHA-256 of the token's ASCII."""
    return b64url(hashlib.sha256(access_token.encode()).digest())


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (its required members only)."""
    members = _REQUIRED_MEMBERS[jwk["kty"]]
    canonical = json.dumps(
        {m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True, ensure_ascii=False
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


_REQUIRED_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}


@dataclass(frozen=True, slots=True)
class _Key:
    alg: str
    key: Any
    jkt: str


def public_key(alg: str, jwk: Any) -> Any:
    """The public key ``jwk`` holds, for ``alg`` (one of ``PROOF_ALGORITHMS``); ValueError
    when it is not a public key of the algorithm's kind (a private member counts against it).
    Also used for client assertion keys (RFC 7523)."""
    if not isinstance(jwk, dict) or PRIVATE_MEMBERS & jwk.keys():
        raise ValueError("not a public JWK")
    kty = jwk.get("kty")
    members = _REQUIRED_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("not a public JWK")
    if alg == "ES256" and kty == "EC" and jwk["crv"] == "P-256":
        x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
        if len(x) != 32 or len(y) != 32:
            raise ValueError("bad P-256 point")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        return numbers.public_key()  # refuses a point off the curve
    if alg == "EdDSA" and kty == "OKP" and jwk["crv"] == "Ed25519":
        x = b64url_decode(jwk["x"])
        if len(x) != 32:
            raise ValueError("bad Ed25519 key")
        return Ed25519PublicKey.from_public_bytes(x)
    if alg in ("RS256", "PS256") and kty == "RSA":
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        if not 2048 <= n.bit_length() <= 8192 or e < 3 or e % 2 == 0:
            raise ValueError("RSA key out of bounds")
        return rsa.RSAPublicNumbers(e, n).public_key()
    raise ValueError("key does not fit the algorithm")


def verify_signature(alg: str, key: Any, signature: bytes, signed: bytes) -> bool:
    """A JWS signature (RFC 7518 §3) by ``key`` over ``signed``."""
    try:
        if alg == "ES256":
            if len(signature) != 64:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signed, _ECDSA)
        elif alg == "EdDSA":
            key.verify(signature, signed)
        elif alg == "RS256":
            key.verify(signature, signed, _PKCS1, _SHA256)
        else:  # PS256
            key.verify(signature, signed, _PSS, _SHA256)
    except InvalidSignature:
        return False
    return True


def normalise_url(url: str) -> str | None:
    """``url`` for comparison (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2 and §6.2.3): scheme and
    host lower-cased, a default port dropped, an empty path made ``/``, percent-encodings
    upper-cased. None for anything but an absolute http(s) URL without query and fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or "?" in url
        or "#" in url
        or parts.username is not None
    ):
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    path = _PERCENT.sub(lambda m: m.group().upper(), parts.path) or "/"
    return f"{scheme}://{host}{path}"


def same_url(htu: str, url: str) -> bool:
    """``htu`` names ``url`` (§4.3 item 9): equal as strings, or once normalised; never when
    ``htu`` is not a URL a proof may name (with a query or fragment, say), even if ``url``
    is no such URL either."""
    if "?" in htu or "#" in htu:
        return False
    if htu == url:
        return True
    normal = normalise_url(htu)
    return normal is not None and normal == normalise_url(url)


class ReplayCache:
    """Proofs seen, by key thumbprint and ``jti``, until their window closes; bounded: when
    full, the entry closest to its end is forgotten first. Safe across threads (the token
    endpoint runs in a threadpool; the proxy on the event loop)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._until: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    def first_use(self, key: str, until: float, now: float) -> bool:
        """Remember ``key`` until ``until``; False when it is remembered already."""
        with self._lock:
            heap, seen = self._heap, self._until
            while heap and heap[0][0] <= now:
                self._forget_first()
            if key in seen:
                return False
            # full: the oldest goes, only now (a proof remembered is refused, full or not)
            while heap and len(seen) >= self._size:
                self._forget_first()
            seen[key] = until
            heapq.heappush(heap, (until, key))
            return True

    def _forget_first(self) -> None:
        end, old = heapq.heappop(self._heap)
        if self._until.get(old) == end:
            del self._until[old]


class NonceSource:
    """Stateless server nonces (RFC 9449 §8): base64url(HMAC-SHA256) of the time step, under a
    key derived from the shared session secret; the current step's and the previous one's are
    accepted, so a nonce lives between one and two ``lifetime``s. With no ``scope``, every
    process that shares the secret makes and accepts the same nonces; with a ``scope`` (random
    bytes of one process) the MAC covers it too, and no other process accepts them."""

    def __init__(self, secret: bytes, lifetime: float, scope: bytes = b"") -> None:
        self._key = hmac.new(secret, b"gateway dpop nonce v1" + scope, hashlib.sha256).digest()
        self._lifetime = lifetime
        self._made: dict[int, str] = {}

    def _nonce(self, step: int) -> str:
        nonce = self._made.get(step)
        if nonce is None:
            if len(self._made) > 4:
                self._made.clear()
            mac = hmac.new(self._key, step.to_bytes(8, "big", signed=True), hashlib.sha256)
            nonce = self._made[step] = b64url(mac.digest())
        return nonce

    def current(self, now: float) -> str:
        return self._nonce(int(now // self._lifetime))

    def accepts(self, nonce: str, now: float) -> bool:
        step = int(now // self._lifetime)
        return hmac.compare_digest(nonce, self._nonce(step)) or hmac.compare_digest(
            nonce, self._nonce(step - 1)
        )


class Checker:
    """RFC 9449 §4.3 for one process: every door that takes proofs shares one (one replay
    cache, one nonce source)."""

    def __init__(
        self, config: DpopConfig, leeway: float, session_secret: bytes, clock: Any = time.time
    ) -> None:
        self._max_age = config.proof_max_age
        self._leeway = leeway
        scope = os.urandom(16) if config.nonce_scope == "process" else b""
        self._nonces = (
            NonceSource(session_secret, config.nonce_lifetime, scope) if config.nonces else None
        )
        self.replays = ReplayCache(config.replay_cache_size)
        self._keys: dict[str, _Key] = {}
        #: access token -> its ``ath``: a client repeats its token on every request
        self._aths: dict[str, str] = {}
        self._clock = clock

    def nonce(self) -> str | None:
        """The nonce to hand out now (``DPoP-Nonce``); None when nonces are off."""
        return None if self._nonces is None else self._nonces.current(self._clock())

    def check(self, proof: str, method: str, url: str, access_token: str | None = None) -> str:
        """The thumbprint of the key that made ``proof`` for a ``method`` request to ``url``
        (absolute, without query and fragment) and, at a resource, for ``access_token``;
        raise ``ProofRefused``."""
        if len(proof) > MAX_PROOF_LENGTH:
            raise ProofRefused(MALFORMED)
        parts = proof.split(".")
        if len(parts) != 3:
            raise ProofRefused(MALFORMED)
        head, body, sig = parts
        key = self._keys.get(head)
        if key is None:
            key = self._header(head)
        try:
            # a str skips json.loads' detection of the bytes' encoding (JSON text is UTF-8)
            claims = _JSON.decode(b64url_decode(body).decode())
            signature = b64url_decode(sig)
        except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError; too deep
            raise ProofRefused(MALFORMED) from None
        if not isinstance(claims, dict):
            raise ProofRefused(MALFORMED)
        jti, htm, htu, iat = (claims.get(n) for n in ("jti", "htm", "htu", "iat"))
        if (
            not isinstance(jti, str)
            or not 0 < len(jti) <= 256
            or not isinstance(htm, str)
            or not isinstance(htu, str)
            or not isinstance(iat, int | float)
            or isinstance(iat, bool)
        ):
            raise ProofRefused(MALFORMED)
        if htm != method or not same_url(htu, url):
            raise ProofRefused(WRONG_REQUEST)
        if access_token is not None and claims.get("ath") != self._ath(access_token):
            raise ProofRefused(WRONG_TOKEN)
        now = self._clock()
        window = self._max_age + self._leeway
        if not now - window <= iat <= now + self._leeway:
            raise ProofRefused(STALE)
        if self._nonces is not None:
            nonce = claims.get("nonce")
            if not isinstance(nonce, str) or not self._nonces.accepts(nonce, now):
                raise ProofRefused(NONCE, "use_dpop_nonce")
        signed = f"{head}.{body}".encode("ascii")
        if not verify_signature(key.alg, key.key, signature, signed):
            raise ProofRefused(BAD_SIGNATURE)
        if not self.replays.first_use(f"{key.jkt}.{jti}", iat + window, now):
            raise ProofRefused(REPLAYED)
        return key.jkt

    def _ath(self, access_token: str) -> str:
        """``token_hash``, remembered per token (a bounded memory, as the keys')."""
        ath = self._aths.get(access_token)
        if ath is None:
            if len(self._aths) >= MAX_REMEMBERED_KEYS:
                self._aths.clear()
            ath = self._aths[access_token] = token_hash(access_token)
        return ath

    def _header(self, head: str) -> _Key:
        """The key a header segment carries, checked (§4.3 items 4 to 7) and remembered."""
        try:
            header = json.loads(b64url_decode(head))
        except (ValueError, RecursionError):
            raise ProofRefused(MALFORMED) from None
        if not isinstance(header, dict) or header.get("typ") != PROOF_TYPE or "crit" in header:
            raise ProofRefused(MALFORMED)
        alg = header.get("alg")
        if alg not in PROOF_ALGORITHMS:
            raise ProofRefused(UNSUPPORTED_KEY)
        jwk: Any = header.get("jwk")
        try:
            key = _Key(alg, public_key(alg, jwk), thumbprint(jwk))
        except (ValueError, KeyError, TypeError):
            raise ProofRefused(UNSUPPORTED_KEY) from None
        if len(self._keys) >= MAX_REMEMBERED_KEYS:
            self._keys.clear()
        self._keys[head] = key
        return key
