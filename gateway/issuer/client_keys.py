"""The public keys a ``private_key_jwt`` client signs its assertions with (RFC 7523 §2.2,
OpenID Connect Core §9): its registered JWK Set, or the one published at its ``jwks_uri``.

A JWK Set is read by ``read_jwks``. Registered (``gateway client create --jwks``, a metadata
document's or a registration's inline ``jwks``), it is held ``strict``: every key a public key
usable with one of ``PROOF_ALGORITHMS`` (``gateway.dpop.public_key``: no private member, no weak
RSA key), each with a distinct ``kid`` when there is more than one. Fetched from a ``jwks_uri``,
keys of other kinds (encryption keys, other curves) are skipped, but a private key anywhere
refuses the whole set: its owner has published what it must keep.

``ClientKeys.key(client, alg, kid)`` finds the one key an assertion names: with a ``kid``, the
key of that ``kid`` usable with ``alg``; without, the only key usable with ``alg``. A
``jwks_uri`` is fetched by the SSRF-safe ``SafeFetcher`` (https only, public addresses, a body
of at most 64 KiB), kept per ``Cache-Control`` between a minute and a day (an hour when unsaid),
a failure for a minute, with one fetch in flight per client (``FetchCache``). A ``kid`` the kept
set does not know makes one new fetch, at most once a minute per client: a flood of made-up
``kid``s costs one fetch, however many threads bring them at once.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway import strict_json
from gateway.config import PROOF_ALGORITHMS, Config
from gateway.config.model import resolve_path
from gateway.dpop import PRIVATE_MEMBERS, public_key
from gateway.errors import ConfigError
from gateway.issuer.fetch_cache import FAILURE_KEEP, FetchCache, keep_for
from gateway.issuer.fetcher import FetchRefused, SafeFetcher
from gateway.models import Client

#: the largest JWK Set fetched from a ``jwks_uri``
MAX_JWKS_BYTES = 64 * 1024
#: the least time between two fetches of one client's set for unknown ``kid``s
REFETCH_INTERVAL = 60
#: the media types a JWK Set is taken in (RFC 7517 §8.5.1, and plain JSON)
JWKS_TYPES = ("application/jwk-set+json", "application/json")
MAX_URI_LENGTH = 2000

log = logging.getLogger("gateway.issuer")


class JwksRefused(ValueError):
    """A JWK Set not usable; ``str()`` is a clause saying why, quoting none of it."""


@dataclass(frozen=True)
class ClientKey:
    kid: str | None
    #: the imported public key for each algorithm it may verify
    keys: dict[str, Any]


@dataclass(frozen=True)
class KeySet:
    keys: tuple[ClientKey, ...]
    #: when it was fetched (the cache's clock); 0 for a registered set
    fetched_at: float = 0.0

    def find(self, alg: str, kid: str | None) -> Any | None:
        """The one key for ``alg`` and ``kid`` (any ``kid`` when None), else None."""
        found = [k.keys[alg] for k in self.keys if alg in k.keys and kid in (None, k.kid)]
        return found[0] if len(found) == 1 else None

    def knows(self, kid: str) -> bool:
        return any(k.kid == kid for k in self.keys)


def _usable(jwk: dict[str, Any]) -> dict[str, Any]:
    """The algorithms the public JWK ``jwk`` may verify, each with its imported key."""
    if jwk.get("use", "sig") != "sig":
        return {}
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return {}
    named = jwk.get("alg")
    keys: dict[str, Any] = {}
    for alg in PROOF_ALGORITHMS:
        if named is not None and named != alg:
            continue
        try:
            keys[alg] = public_key(alg, jwk)
        except (ValueError, TypeError, KeyError):
            continue
    return keys


def read_jwks(document: Any, *, strict: bool) -> KeySet:
    """The keys of the JWK Set ``document`` (a JSON object ``{"keys": [...]}``), by the rules
    above; ``JwksRefused`` saying why not."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksRefused('is not a JWK Set (a JSON object with a "keys" array)')
    jwks: list[Any] = document["keys"]
    if not all(isinstance(jwk, dict) for jwk in jwks):
        raise JwksRefused("has a key that is not a JSON object")
    if any(PRIVATE_MEMBERS & jwk.keys() for jwk in jwks):
        raise JwksRefused("holds a private or symmetric key: only public keys are taken")
    keys: list[ClientKey] = []
    for i, jwk in enumerate(jwks):
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            if strict:
                raise JwksRefused(f"has keys[{i}] whose kid is not a string")
            continue
        usable = _usable(jwk)
        if not usable:
            if strict:
                raise JwksRefused(
                    f"has keys[{i}], which is not a public signing key for "
                    + ", ".join(PROOF_ALGORITHMS)
                    + " (RSA keys of 2048 bits at least)"
                )
            continue
        keys.append(ClientKey(kid, usable))
    if strict:
        if not keys:
            raise JwksRefused("holds no key")
        kids = [k.kid for k in keys]
        if len(keys) > 1 and (None in kids or len(set(kids)) != len(kids)):
            raise JwksRefused("has several keys: each needs a kid of its own")
    return KeySet(tuple(keys))


def jwks_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a ``jwks_uri``, or None: an https URL (the fetcher takes no
    other), with a host, no credentials nor fragment, at most ``MAX_URI_LENGTH`` long."""
    if len(uri) > MAX_URI_LENGTH:
        return f"is longer than {MAX_URI_LENGTH} characters"
    if any(c.isspace() or not c.isprintable() for c in uri):
        return "must not contain white space or control characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL with a host"
    if "@" in parts.netloc or "#" in uri:
        return "must carry no credentials and no fragment"
    return None


def registration_fetcher(config: Config, max_bytes: int) -> SafeFetcher:
    """The SSRF-safe fetcher by ``[registration]`` (``ca_file``, ``allow_private_addresses``),
    for what clients name: metadata documents and ``jwks_uri``s alike; a ``ca_file`` that
    cannot be loaded is a ``ConfigError``."""
    registration = config.registration
    ca_file = registration.ca_file
    try:
        return SafeFetcher(
            ca_file=None if ca_file is None else str(resolve_path(config.base_dir, ca_file)),
            allow_private=registration.allow_private_addresses,
            max_bytes=max_bytes,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"registration.ca_file: cannot be loaded: {exc}") from None


class ClientKeys:
    """The keys of ``private_key_jwt`` clients. ``clock``: monotonic seconds, shared with the
    cache (tests move it on instead of waiting)."""

    def __init__(
        self,
        fetcher: SafeFetcher,
        cache: FetchCache[KeySet | str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetcher = fetcher
        self.cache: FetchCache[KeySet | str] = cache or FetchCache(clock=clock)
        self.clock = self.cache.clock

    @classmethod
    def from_config(cls, config: Config) -> ClientKeys:
        return cls(registration_fetcher(config, MAX_JWKS_BYTES))

    def key(self, client: Client, alg: str, kid: str | None) -> Any | None:
        """The public key of ``client`` that an assertion signed with ``alg`` naming ``kid``
        is verified with; None when there is none (or its set cannot be had)."""
        if client.jwks is not None:
            try:
                return read_jwks(client.jwks, strict=True).find(alg, kid)
            except JwksRefused:
                return None
        if not client.jwks_uri:
            return None
        cache_key = f"{client.client_id} {client.jwks_uri}"
        uri = client.jwks_uri
        kept = self.cache.get(cache_key, lambda: self._load(uri))
        if (
            isinstance(kept, KeySet)
            and kid is not None
            and not kept.knows(kid)
            and self.clock() - kept.fetched_at >= REFETCH_INTERVAL
        ):
            # perhaps rotated: fetch again, once for all the callers that found it wanting
            self.cache.forget(cache_key, kept)
            kept = self.cache.get(cache_key, lambda: self._load(uri))
        return kept.find(alg, kid) if isinstance(kept, KeySet) else None

    def _load(self, uri: str) -> tuple[KeySet | str, float]:
        fetched_at = self.clock()
        try:
            fetched = self.fetcher.fetch(uri, JWKS_TYPES)
            keys = read_jwks(strict_json.loads(fetched.body), strict=False)
        except FetchRefused as refused:
            reason = f"the JWK Set could not be fetched: {refused}"
        except ValueError as refused:  # JwksRefused, or not JSON
            reason = f"the JWK Set is not usable: {refused}"
        else:
            return KeySet(keys.keys, fetched_at), keep_for(fetched.max_age)
        log.warning("jwks_uri %s: %s", uri, reason)
        return reason, FAILURE_KEEP
