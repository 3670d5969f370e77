"""Checks of the tables for what clients bring with them: self-registration, DPoP proofs and
pushed authorization requests. ``gateway.config.load`` runs them after the rest; each refusal
names its dotted key, as every other check does."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.model import NONCE_SCOPES, REGISTRATION_MODES, Config, resolve_path
from gateway.errors import ConfigError

Fail = Callable[[str, str], ConfigError]


def validate_protocols(config: Config, fail: Fail) -> None:
    _validate_registration(config, fail)
    for key, value in (
        ("dpop.proof_max_age", config.dpop.proof_max_age),
        ("dpop.nonce_lifetime", config.dpop.nonce_lifetime),
        ("dpop.replay_cache_size", config.dpop.replay_cache_size),
        ("par.request_lifetime", config.par.request_lifetime),
    ):
        if value <= 0:
            raise fail(key, "must be positive")
    if config.dpop.nonce_scope not in NONCE_SCOPES:
        raise fail("dpop.nonce_scope", 'must be "shared" or "process"')
    if config.par.request_lifetime > 600:
        # RFC 9126 §2.2: a short lifetime (the examples use 60 seconds); a request_uri is a
        # bearer handle to a whole authorization request
        raise fail("par.request_lifetime", "must be at most 600 seconds")


def _validate_registration(config: Config, fail: Fail) -> None:
    registration = config.registration
    if registration.dynamic not in REGISTRATION_MODES:
        raise fail("registration.dynamic", 'must be "off", "open" or "token"')
    if registration.max_per_address_per_hour <= 0:
        raise fail("registration.max_per_address_per_hour", "must be positive")
    if any(not pattern.strip() for pattern in registration.metadata_document_hosts):
        raise fail("registration.metadata_document_hosts", "must not hold an empty pattern")
    if registration.ca_file is not None:
        if not resolve_path(config.base_dir, registration.ca_file).is_file():
            raise fail("registration.ca_file", f"no such file: {registration.ca_file}")
