"""RFC 7638 JWK thumbprints computed by hand from a PEM file, independently of joserfc."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int, length: int | None = None) -> bytes:
    return value.to_bytes(length or (value.bit_length() + 7) // 8, "big")


def required_members(pem: bytes) -> dict[str, str]:
    """RFC 7638 §3.2: the required members of the public JWK, and only those."""
    key = serialization.load_pem_private_key(pem, password=None)
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {"e": b64url(_uint(numbers.e)), "kty": "RSA", "n": b64url(_uint(numbers.n))}
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        assert public.curve.name == "secp256r1"
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(_uint(numbers.x, 32)),
            "y": b64url(_uint(numbers.y, 32)),
        }
    assert isinstance(public, ed25519.Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}


def thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 §3.1: SHA-256 over the members in lexicographic order, no whitespace."""
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def thumbprint_of_pem(path: Path) -> str:
    return thumbprint(required_members(path.read_bytes()))


def at_hash(access_token: str, alg: str) -> str:
    """OpenID Connect Core §3.1.3.6, computed by hand: the left half of the hash the JWS alg
    uses (SHA-512 for Ed25519), base64url."""
    name = "sha512" if alg in ("EdDSA", "Ed25519") else f"sha{alg[-3:]}"
    digest = hashlib.new(name, access_token.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])
