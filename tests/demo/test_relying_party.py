"""The demo browser client's ID token checks (``gateway.demo.relying_party.verify_id_token``), each
refusal forced with a real token signed by a real key and the JWKS served over HTTP on
127.0.0.1, as the live demo fetches it."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.relying_party import SignInFailed, expected_at_hash, verify_id_token
from gateway.keys import KeyRing, create_key

ISSUER = "http://127.0.0.1:8000"
CLIENT = "demo-browser"
NONCE = "n-0S6_WzA2Mj"
ACCESS_TOKEN = "an-access-token"


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    directory: Path = tmp_path_factory.mktemp("keys")
    create_key(directory, "RS256")
    return KeyRing(directory)


@pytest.fixture(scope="module")
def metadata(keyring: KeyRing) -> Iterator[dict[str, Any]]:
    body = json.dumps(keyring.jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/jwk-set+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "issuer": ISSUER,
            "jwks_uri": f"http://127.0.0.1:{server.server_address[1]}/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def id_token(keyring: KeyRing, typ: str = "JWT", **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "at_hash": expected_at_hash(ACCESS_TOKEN, "RS256"),
        **changes,
    }
    return keyring.sign({k: v for k, v in claims.items() if v is not None}, typ=typ)


async def test_a_valid_id_token(keyring: KeyRing, metadata: dict[str, Any]) -> None:
    header, claims, checks = await verify_id_token(
        metadata, id_token(keyring), ACCESS_TOKEN, CLIENT, NONCE
    )
    assert header["kid"] == keyring.active_key.kid
    assert claims["sub"] == "user-1"
    assert "nonce matched the one sent" in checks
    assert "at_hash matches the access token" in checks


@pytest.mark.parametrize(
    ("changes", "typ", "why"),
    [
        pytest.param({"nonce": "other"}, "JWT", "not valid", id="nonce-other"),
        pytest.param({"nonce": None}, "JWT", "not valid", id="nonce-missing"),
        pytest.param({"aud": "another-client"}, "JWT", "not valid", id="aud-other"),
        pytest.param({"iss": "http://evil.test"}, "JWT", "not valid", id="iss-other"),
        pytest.param({"exp": int(time.time()) - 3600}, "JWT", "not valid", id="expired"),
        pytest.param({"at_hash": "AAAA"}, "JWT", "at_hash", id="at-hash-other"),
        pytest.param({}, "at+jwt", "access token", id="an-access-token"),
    ],
)
async def test_refusals(
    keyring: KeyRing, metadata: dict[str, Any], changes: dict[str, Any], typ: str, why: str
) -> None:
    with pytest.raises(SignInFailed) as refused:
        await verify_id_token(
            metadata, id_token(keyring, typ, **changes), ACCESS_TOKEN, CLIENT, NONCE
        )
    assert why in refused.value.title


async def test_a_forged_signature(keyring: KeyRing, metadata: dict[str, Any]) -> None:
    head, payload, signature = id_token(keyring).split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(SignInFailed, match="not valid"):
        await verify_id_token(metadata, forged, ACCESS_TOKEN, CLIENT, NONCE)


async def test_an_algorithm_not_announced(keyring: KeyRing, metadata: dict[str, Any]) -> None:
    only_es256 = {**metadata, "id_token_signing_alg_values_supported": ["ES256"]}
    with pytest.raises(SignInFailed, match="algorithm not announced"):
        await verify_id_token(only_es256, id_token(keyring), ACCESS_TOKEN, CLIENT, NONCE)
