"""The DPoP case (RFC 9449): a DPoP-bound token and a fresh ES256 proof per request on a
``dpop = "required"`` scoped route, beside the bearer scoped one.

The proofs are signed before each run, not during it: the load generator shares the machine,
and its signing must not be counted against (or slow) the gateway. Each carries a unique
``jti`` and an ``iat`` of when it was made, within the gateway's window (``[dpop]
proof_max_age``, 60 s) for the whole run. The token is the bench client's own, bound to the
proof key (``cnf.jkt``) and signed with the deployment's key, as the token endpoint binds it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from benchmarks import servers
from benchmarks.cases import access_token
from benchmarks.load import Case, Run, wrk
from benchmarks.plan import Plan
from gateway.keys import KeyRing

#: proofs made per second of a run: twice what one worker could take at 150 µs a request
PROOFS_PER_SECOND = 15_000
_SHA256 = hashes.SHA256()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: object) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


class ProofKey:
    """An ES256 key pair and the proofs it signs (compact JWS, RFC 7515)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        numbers = self._key.public_key().public_numbers()
        jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
        #: RFC 7638 thumbprint, the token's ``cnf.jkt``
        self.jkt = _b64(hashlib.sha256(canonical).digest())
        self._header = _segment({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})

    def proofs(self, count: int, url: str, token: str) -> list[str]:
        ath = _b64(hashlib.sha256(token.encode()).digest())
        iat = int(time.time())
        made = []
        for _ in range(count):
            claims = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": url, "iat": iat, "ath": ath}
            signed = f"{self._header}.{_segment(claims)}"
            r, s = decode_dss_signature(self._key.sign(signed.encode(), ec.ECDSA(_SHA256)))
            made.append(f"{signed}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
        return made


def bound_token(base: str, deployment: servers.Deployment, key: ProofKey) -> str:
    """The bench client's access token, bound to ``key``: its claims plus ``cnf``, signed by
    the deployment's active key."""
    token = access_token(base, deployment)
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["cnf"] = {"jkt": key.jkt}
    return KeyRing(deployment.config.parent / "keys").sign(claims)


def dpop_case(
    plan: Plan,
    name: str,
    url: str,
    pid: int,
    upstream_pid: int,
    base: str,
    deployment: servers.Deployment,
    folder: Path,
) -> Case:
    """A wrk run through a DPoP route: GET, a proof made beforehand for every request."""
    key = ProofKey()
    token = bound_token(base, deployment, key)
    file = folder / f"{name}-proofs.txt"

    def load(seconds: float) -> Run:
        count = math.ceil(seconds * PROOFS_PER_SECOND) + 1000
        file.write_text("\n".join(key.proofs(count, url, token)) + "\n")
        return wrk(
            url,
            seconds=seconds,
            connections=plan.proxy_connections,
            threads=plan.wrk_threads,
            lua="dpop_get",
            args=(str(file), str(plan.wrk_threads), token),
            pin=plan.cores.pin(plan.cores.load),
            cpu_of=pid,
            load_of=(upstream_pid,),
        )

    return Case(name, lambda: load(plan.seconds), lambda: load(1))
