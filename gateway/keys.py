"""Signing keys: PEM files in ``keys/``, one per ``kid`` (the RFC 7638 thumbprint).

Each ``<kid>.pem`` (mode 0600) has a ``<kid>.json`` sidecar: its algorithm and the time it starts
signing. A rotated key is published in the JWKS at once and signs only from ``activates_at``,
so verifiers have fetched it before they meet a token it signed. Retiring a key moves its
files to ``retired/``: out of the JWKS and out of validation.

``KeyRing`` is what a running process holds; ``reload_if_changed()`` picks up changes that the
CLI (or another replica) made in the folder, without a restart.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSAlgModel, JWSRegistry

from gateway.errors import ConfigError


def _quiet(alg: JWSAlgModel) -> JWSAlgModel:
    quiet = copy.copy(alg)
    quiet.security_warning = None
    return quiet


class _Registry(JWSRegistry):
    """joserfc's JWS registry, without its per-use warning for "EdDSA".

    RFC 9864 deprecates "EdDSA" in favour of "Ed25519", but most verifiers (PyJWT, jose4j,
    Envoy) only know "EdDSA" today; ``algorithm = "EdDSA"`` is an explicit interop choice of the
    operator. joserfc warns on every sign and verify; a process-wide warnings filter would not
    hold where warnings are errors (``-W error``, pytest), so the algorithm is quiet here."""

    algorithms = {  # noqa: RUF012 - joserfc's attribute
        **JWSRegistry.algorithms,
        "EdDSA": _quiet(JWSRegistry.algorithms["EdDSA"]),
    }


@functools.cache
def jws_registry(alg: str) -> JWSRegistry:
    """A registry that allows exactly ``alg`` (the key decides the algorithm); one per alg,
    made once: validation is on the proxy's hot path."""
    return _Registry(algorithms=[alg])


SESSION_SECRET_FILE = "session.key"
RETIRED = "retired"

AnyKey = RSAKey | ECKey | OKPKey


def _generate(algorithm: str) -> AnyKey:
    if algorithm == "RS256":
        return RSAKey.generate_key(2048)
    if algorithm == "ES256":
        return ECKey.generate_key("P-256")
    if algorithm in ("EdDSA", "Ed25519"):
        return OKPKey.generate_key("Ed25519")
    raise ConfigError(f"unsupported signing algorithm {algorithm!r}")


def _import(pem: bytes, algorithm: str) -> AnyKey:
    if algorithm == "RS256":
        return RSAKey.import_key(pem)
    if algorithm == "ES256":
        return ECKey.import_key(pem)
    return OKPKey.import_key(pem)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: AnyKey
    created_at: float
    activates_at: float

    def public_jwk(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg, "use": "sig"}


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` with mode 0600 from the first byte, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def create_key(directory: Path, algorithm: str, activation_delay: float = 0) -> SigningKey:
    """Generate a key, publish it now, let it sign after ``activation_delay`` seconds."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = _generate(algorithm)
    kid = key.thumbprint()
    created = time.time()
    activates = created + activation_delay
    meta = {"alg": algorithm, "created_at": created, "activates_at": activates}
    # The PEM is written last: a reader that sees it also sees its sidecar.
    _write_private(directory / f"{kid}.json", json.dumps(meta).encode())
    _write_private(directory / f"{kid}.pem", key.as_pem(private=True))
    return SigningKey(kid, algorithm, key, created, activates)


def retire_key(directory: Path, kid: str) -> None:
    pem = directory / f"{kid}.pem"
    if "/" in kid or kid.startswith(".") or not pem.is_file():
        raise ConfigError(f"no published key with kid {kid!r}")
    retired = directory / RETIRED
    retired.mkdir(exist_ok=True, mode=0o700)
    os.replace(pem, retired / pem.name)
    sidecar = directory / f"{kid}.json"
    if sidecar.exists():
        os.replace(sidecar, retired / sidecar.name)


def load_keys(directory: Path) -> list[SigningKey]:
    """Every published key, oldest first. Unreadable files are errors, not silently skipped."""
    keys: list[SigningKey] = []
    if not directory.is_dir():
        return keys
    for pem in sorted(directory.glob("*.pem")):
        kid = pem.stem
        try:
            meta = json.loads((directory / f"{kid}.json").read_text())
            key = _import(pem.read_bytes(), meta["alg"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not pem.exists():  # retired while we read it
                continue
            raise ConfigError(f"{pem}: not a readable signing key ({exc})") from None
        if key.thumbprint() != kid:
            raise ConfigError(f"{pem}: file name does not match the key's thumbprint")
        keys.append(
            SigningKey(
                kid, meta["alg"], key, float(meta["created_at"]), float(meta["activates_at"])
            )
        )
    keys.sort(key=lambda k: (k.activates_at, k.created_at))
    return keys


def ensure_key(directory: Path, algorithm: str) -> SigningKey | None:
    """Create a first key (signing at once) if the folder has none; return it, else None."""
    if load_keys(directory):
        return None
    return create_key(directory, algorithm, 0)


def session_secret(directory: Path) -> bytes:
    """The secret that signs login-page cookies, shared by replicas through ``keys/``."""
    path = directory / SESSION_SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        return path.read_bytes()


class KeyRing:
    """The keys one process signs and validates with, reloaded when the folder changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: tuple[Any, ...] = ()
        self.keys: list[SigningKey] = []
        self.by_kid: dict[str, SigningKey] = {}
        self.reload_if_changed()

    def _folder_stamp(self) -> tuple[Any, ...]:
        entries = []
        try:
            with os.scandir(self.directory) as found:
                for entry in found:
                    if not entry.name.endswith((".pem", ".json")):
                        continue
                    try:
                        entries.append((entry.name, entry.stat().st_mtime_ns))
                    except FileNotFoundError:  # retired meanwhile; the next look sees it gone
                        continue
        except FileNotFoundError:
            pass
        return tuple(sorted(entries))

    def reload_if_changed(self) -> bool:
        stamp = self._folder_stamp()
        if stamp == self._stamp:
            return False
        keys = load_keys(self.directory)
        self.keys = keys
        self.by_kid = {k.kid: k for k in keys}
        self._stamp = stamp
        return True

    @property
    def active_key(self) -> SigningKey:
        """The newest key whose activation time has come (the oldest, if none has yet)."""
        if not self.keys:
            raise ConfigError(f"{self.directory}: no signing key; run 'gateway init'")
        current = time.time()
        active = [k for k in self.keys if k.activates_at <= current]
        return active[-1] if active else self.keys[0]

    @property
    def algorithms(self) -> list[str]:
        return sorted({k.alg for k in self.keys})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def sign(
        self, claims: dict[str, Any], typ: str = "at+jwt", key: SigningKey | None = None
    ) -> str:
        """A JWS of ``claims`` by ``key`` (default: the active key); ``typ`` says what it is
        (RFC 8725 §3.11). Pass the key when a claim depends on its alg (an ID token's
        ``at_hash``): the active key may change in between."""
        key = key or self.active_key
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key.key, registry=jws_registry(key.alg))
