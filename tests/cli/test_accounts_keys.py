"""``gateway client create --auth-method private_key_jwt (--jwks FILE | --jwks-uri URL)`` and
what ``client list`` shows of such a client."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.assertions import Signer, jwks

BASE = ("client", "create", "--name", "Keys", "--grant-type", "client_credentials")


def test_create_with_a_jwks_file_and_list(gw, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(jwks(Signer("ES256", "k1"), Signer("RS256", "k2"))))
    code, out, err = gw(*BASE, "--auth-method", "private_key_jwt", "--jwks", str(path), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["client_secret"] is None
    code, out, _ = gw("client", "list", "--json")
    (row,) = json.loads(out)
    assert row["auth_method"] == "private_key_jwt"
    _, text, _ = gw("client", "list")
    assert "  auth=private_key_jwt  origin=cli" in text


def test_create_with_a_jwks_uri(gw) -> None:
    code, out, err = gw(
        *BASE, "--auth-method", "private_key_jwt", "--jwks-uri", "https://k.example/jwks"
    )
    assert code == 0, err
    assert "client_secret" not in out


def test_refusals(gw, tmp_path: Path) -> None:
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [Signer().jwk(private=True)]}))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    cases = [
        (("--auth-method", "private_key_jwt"), "needs one of --jwks and --jwks-uri"),
        (("--auth-method", "private_key_jwt", "--jwks", str(private)), "private"),
        (("--auth-method", "private_key_jwt", "--jwks", str(broken)), "not a JSON file"),
        (("--auth-method", "private_key_jwt", "--jwks", str(tmp_path / "no")), "cannot be read"),
        (
            ("--auth-method", "private_key_jwt", "--jwks-uri", "http://k.example/"),
            "https",
        ),
        (("--jwks-uri", "https://k.example/jwks"), "private_key_jwt only"),
    ]
    for argv, message in cases:
        code, out, err = gw(*BASE, *argv)
        assert code != 0 and message in err, (argv, out, err)
    code, _, err = gw(
        *BASE, "--auth-method", "private_key_jwt", "--jwks", "a", "--jwks-uri", "https://k/"
    )
    assert code == 2 and "not allowed with" in err
    _, out, _ = gw("client", "list", "--json")
    assert json.loads(out) == []
