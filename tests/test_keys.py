"""Signing keys: one PEM per key (mode 0600) named by its RFC 7638 thumbprint, published in the
JWKS before it signs (activation delay), retired out of the JWKS and out of validation, and
picked up by a running gateway without a restart."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from gateway import cli
from gateway.errors import InvalidToken
from gateway.keys import KeyRing, create_key, load_keys, retire_key
from tests.support.issuer import (
    JWKS,
    config_toml,
    decode,
    header,
    is_active,
    password_grant,
    running,
    tokens,
    wait_for,
)
from tests.support.keyutil import required_members, thumbprint, thumbprint_of_pem

ALGORITHMS = ["RS256", "ES256", "EdDSA"]


def test_thumbprint_helper_matches_rfc7638_example():
    """RFC 7638 §3.1, so the independent computation below is itself checked."""
    members = {
        "e": "AQAB",
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4v"
        "MQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert thumbprint(members) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.fixture(params=ALGORITHMS)
def config(request, config):
    keys = dataclasses.replace(config.keys, algorithm=request.param, reload_interval=0.05)
    return dataclasses.replace(config, keys=keys)


@pytest.fixture
def cli_config(config, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_CONFIG", "")  # restored after the test: main() sets it
    return config_toml(config, tmp_path / "gateway.toml", activation_delay=3600)


def run(*argv: str) -> None:
    assert cli.main(list(argv)) == 0


def activate_now(keys_dir: Path, kid: str) -> None:
    """As if the activation delay had passed: the sidecar says when a key starts signing.
    Replaced atomically, as the CLI writes it, so a reload never reads half a file."""
    sidecar = keys_dir / f"{kid}.json"
    meta = json.loads(sidecar.read_text())
    tmp = keys_dir / f".{kid}.tmp"
    tmp.write_text(json.dumps({**meta, "activates_at": time.time()}))
    os.replace(tmp, sidecar)


def kids(client) -> set[str]:
    return {k["kid"] for k in client.get(JWKS).json()["keys"]}


def test_one_private_pem_per_key_named_by_thumbprint(config, storage):
    pems = sorted(config.keys_dir.glob("*.pem"))
    assert len(pems) == 1
    for pem in pems:
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        assert pem.stem == thumbprint_of_pem(pem)
        sidecar = json.loads(pem.with_suffix(".json").read_text())
        assert sidecar["alg"] == config.keys.algorithm


def test_jwks_lists_every_published_key(config, storage, cli_config):
    run("--config", str(cli_config), "key", "rotate")
    with running(config) as client:
        response = client.get(JWKS)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/jwk-set+json")
        served = response.json()["keys"]
    pems = sorted(config.keys_dir.glob("*.pem"))
    assert len(served) == len(pems) == 2
    by_kid = {k["kid"]: k for k in served}
    for pem in pems:
        jwk = by_kid[pem.stem]
        assert (jwk["alg"], jwk["use"]) == (config.keys.algorithm, "sig")
        members = required_members(pem.read_bytes())
        assert {k: jwk[k] for k in members} == members  # the public key, exactly
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)  # and nothing private
        assert jwk["kid"] == thumbprint(members)


def test_rotation_publishes_first_and_signs_after_the_activation_delay(
    config, storage, user, confidential, cli_config
):
    with running(config) as client:
        old_kid = header(tokens(password_grant(client, confidential))["access_token"])["kid"]
        run("--config", str(cli_config), "key", "rotate")
        (new,) = [k for k in load_keys(config.keys_dir) if k.kid != old_kid]
        assert new.activates_at >= time.time() + 3500

        wait_for(lambda: new.kid in kids(client))  # published at once
        access = tokens(password_grant(client, confidential))["access_token"]
        assert header(access)["kid"] == old_kid  # but not signing yet
        decode(client, access)

        activate_now(config.keys_dir, new.kid)

        def signs_with_new_key() -> bool:
            access = tokens(password_grant(client, confidential))["access_token"]
            return header(access)["kid"] == new.kid

        wait_for(signs_with_new_key)
        assert old_kid in kids(client)  # still published: its tokens still validate


def test_retire_unpublishes_and_its_tokens_stop_validating(
    app, config, storage, user, confidential, resource_server, cli_config
):
    with running(config) as client:
        old = tokens(password_grant(client, confidential))["access_token"]
        old_kid = header(old)["kid"]
        sidecar_delay = ("--config", str(cli_config))
        run(*sidecar_delay, "key", "rotate")
        (new,) = [k for k in load_keys(config.keys_dir) if k.kid != old_kid]
        activate_now(config.keys_dir, new.kid)
        assert is_active(client, resource_server, old)

        run(*sidecar_delay, "key", "retire", "--", old_kid)  # a kid may start with "-"

        wait_for(lambda: old_kid not in kids(client))
        assert not (config.keys_dir / f"{old_kid}.pem").exists()
        assert not is_active(client, resource_server, old)
        validator = client.app.gateway.validator
        with pytest.raises(InvalidToken):
            validator.validate(old, audience=None)
        fresh = tokens(password_grant(client, confidential))["access_token"]
        assert header(fresh)["kid"] == new.kid
        assert is_active(client, resource_server, fresh)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(("key", "retire", "only"), "cannot retire the only key", id="only-key"),
        pytest.param(("key", "retire", "no-such-kid"), "no published key", id="unknown-kid"),
        pytest.param(("key", "retire", "../session"), "no published key", id="path-trick"),
    ],
)
def test_retire_refusals(config, storage, cli_config, capsys, argv, message):
    if argv[-1] == "only":
        argv = (*argv[:-1], "--", load_keys(config.keys_dir)[0].kid)
    assert cli.main(["--config", str(cli_config), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert len(load_keys(config.keys_dir)) == 1


def test_reload_while_keys_come_and_go(tmp_path):
    """A reload racing the CLI's rotate and retire neither fails nor leaks the folder scan."""
    directory = tmp_path / "keys"
    create_key(directory, "ES256")
    ring = KeyRing(directory)
    stop, errors = threading.Event(), []

    def reload() -> None:
        while not stop.is_set():
            try:
                ring.reload_if_changed()
            except Exception as exc:
                errors.append(exc)

    reloader = threading.Thread(target=reload)
    reloader.start()
    try:
        for _ in range(200):
            retire_key(directory, create_key(directory, "ES256").kid)
    finally:
        stop.set()
        reloader.join()
    gc.collect()  # an unclosed scandir iterator would warn here (warnings are errors)
    assert errors == []
    ring.reload_if_changed()
    assert len(ring.keys) == 1
