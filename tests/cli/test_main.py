"""The ``gateway`` command line, called in-process as ``gateway.cli.main([...])`` with a config
file in tmp_path. Usage and config errors exit 2 with one line on stderr and no traceback."""

from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa

from gateway import cli
from gateway.config import Config
from gateway.demo.serve import demo_issuer
from gateway.models import Client, User
from gateway.storage import head_revision
from tests.support.app import PASSWORD, Registered, make_client, make_user
from tests.support.issuer import decode, is_active, password_grant, refresh, token_request, tokens


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_init_is_idempotent(config, gw):
    code, out, err = gw("init")
    assert code == 0
    assert "created signing key" in err
    assert "database ready" in out
    pems = sorted(config.keys_dir.glob("*.pem"))
    code, out, err = gw("init")
    assert code == 0
    assert "created signing key" not in err
    assert sorted(config.keys_dir.glob("*.pem")) == pems
    assert (config.keys_dir / "session.key").exists()


def test_db_current(storage, gw):
    code, out, _ = gw("db", "current")
    assert code == 0
    assert out.strip() == f"{head_revision(storage.engine)} (up to date)"


def test_user_create_from_stdin(storage, gw, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, out, _ = gw("user", "create", "--email", "Bob@Example.com", "--password-stdin", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["email"] == "bob@example.com"
    with storage.session() as session:
        row = session.scalars(sa.select(User).where(User.id == created["id"])).one()
        assert PASSWORD not in row.password_hash
        assert row.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        pytest.param("alice@example.com", PASSWORD, "already exists", id="duplicate"),
        pytest.param("not-an-email", PASSWORD, "not an email address", id="bad-email"),
        pytest.param("carol@example.com", "short", "at least 8", id="short-password"),
    ],
)
def test_user_create_refusals(user, gw, monkeypatch, email, password, message):
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    code, _, err = gw("user", "create", "--email", email, "--password-stdin")
    assert message in one_line_error(code, err)


def test_client_create_list_delete(client, storage, user, gw):
    code, out, _ = gw(
        "client",
        "create",
        "--name",
        "CLI app",
        "--grant-type",
        "password",
        "--grant-type",
        "refresh_token",
        "--scope",
        "orders:read",
        "--json",
    )
    assert code == 0
    created = json.loads(out)
    assert set(created) == {"client_id", "client_secret"} and created["client_secret"]

    with storage.session() as session:
        row = session.scalars(sa.select(Client).where(Client.client_id == created["client_id"]))
        registered = Registered(created["client_id"], created["client_secret"], row.one())
    issued = tokens(password_grant(client, registered))
    assert issued["scope"] == "orders:read"

    code, out, _ = gw("client", "list", "--json")
    listed = {c["client_id"]: c for c in json.loads(out)}
    assert listed[created["client_id"]]["grant_types"] == ["password", "refresh_token"]
    assert created["client_secret"] not in out

    code, out, _ = gw("client", "delete", "--", created["client_id"])
    assert code == 0
    code, out, _ = gw("client", "list", "--json")
    assert created["client_id"] not in {c["client_id"] for c in json.loads(out)}
    # its grants are revoked with it
    rs = make_client(storage, name="RS", grant_types=("client_credentials",), can_introspect=True)
    assert not is_active(client, rs, issued["access_token"])
    assert not is_active(client, rs, issued["refresh_token"])


def test_client_list_shows_how_each_client_came(gw, storage):
    code, out, _ = gw(
        "client",
        "create",
        "--name",
        "Ops",
        "--public",
        "--redirect-uri",
        "https://ops.example/cb",
        "--json",
    )
    made = json.loads(out)["client_id"]
    document = "https://agent.example/client.json"
    with storage.session() as session:
        session.add(
            Client(
                client_id=document,
                name="Agent",
                token_endpoint_auth_method="none",
                redirect_uris=["http://127.0.0.1:9/cb"],
                grant_types=["authorization_code"],
                origin="metadata-document",
            )
        )
    code, out, _ = gw("client", "list", "--json")
    origins = {c["client_id"]: c["origin"] for c in json.loads(out)}
    assert origins == {made: "cli", document: "metadata-document"}
    code, out, _ = gw("client", "list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "  origin=cli" in lines[made]
    assert lines[document].endswith("  origin=metadata-document")


def test_public_client_create(gw):
    code, out, _ = gw(
        "client",
        "create",
        "--name",
        "SPA",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1:9999/cb",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["client_secret"] is None


def test_key_list_rotate_retire(storage, config, gw):
    _code, out, _ = gw("key", "list", "--json")
    (first,) = json.loads(out)
    assert first["status"] == "active" and first["alg"] == config.keys.algorithm
    assert gw("key", "rotate")[0] == 0
    keys = json.loads(gw("key", "list", "--json")[1])
    assert len(keys) == 2
    (second,) = [k for k in keys if k["kid"] != first["kid"]]
    assert second["status"] == "active"  # activation_delay defaults to 0
    assert gw("key", "retire", "--", first["kid"])[0] == 0
    assert [k["kid"] for k in json.loads(gw("key", "list", "--json")[1])] == [second["kid"]]


def test_token_revoke_jti(client, user, confidential, resource_server, gw):
    issued = tokens(password_grant(client, confidential))
    other = tokens(password_grant(client, confidential))
    jti = decode(client, issued["access_token"])["jti"]
    code, _out, _ = gw("token", "revoke", "--jti", jti)
    assert code == 0
    assert not is_active(client, resource_server, issued["access_token"])
    assert is_active(client, resource_server, other["access_token"])


def test_token_revoke_user(client, storage, user, confidential, resource_server, gw):
    bob = make_user(storage, "bob@example.com")
    alice_tokens = [tokens(password_grant(client, confidential)) for _ in range(2)]
    bob_tokens = tokens(password_grant(client, confidential, email=bob.email))
    service = tokens(token_request(client, confidential, grant_type="client_credentials"))

    code, out, _ = gw("token", "revoke", "--user", "ALICE@example.com")
    assert code == 0
    assert "2 grant(s)" in out

    for issued in alice_tokens:
        assert not is_active(client, resource_server, issued["access_token"])
        assert not is_active(client, resource_server, issued["refresh_token"])
        assert refresh(client, confidential, issued["refresh_token"]).status_code == 400
    assert is_active(client, resource_server, bob_tokens["access_token"])
    assert is_active(client, resource_server, service["access_token"])


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param((), id="no-command"),
        pytest.param(("frobnicate",), id="unknown-command"),
        pytest.param(("client", "create"), id="missing-name"),
        pytest.param(("client", "create", "--name", "x", "--grant-type", "implicit"), id="grant"),
        pytest.param(
            ("client", "create", "--name", "x", "--public", "--auth-method", "client_secret_post"),
            id="public-with-secret-method",
        ),
        pytest.param(
            ("client", "create", "--name", "x", "--redirect-uri", "http://evil.com/cb"),
            id="http-redirect-uri",
        ),
        pytest.param(
            ("client", "create", "--name", "x", "--redirect-uri", "javascript:alert(1)//cb"),
            id="javascript-redirect-uri",
        ),
        pytest.param(("client", "create", "--name", "x"), id="code-without-redirect-uri"),
        pytest.param(("client", "delete", "no-such-client"), id="delete-unknown"),
        pytest.param(("token", "revoke"), id="revoke-needs-target"),
        pytest.param(("token", "revoke", "--jti", "a", "--user", "b"), id="revoke-both"),
        pytest.param(("token", "revoke", "--user", "nobody@example.com"), id="unknown-user"),
        pytest.param(("key", "retire"), id="retire-needs-kid"),
        pytest.param(("user", "create"), id="user-needs-email"),
    ],
)
def test_usage_errors_exit_2_with_one_line(storage, gw, argv):
    code, out, err = gw(*argv)
    one_line_error(code, err)
    assert out == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[tokens]\nttl = 1\n", "tokens.ttl: unknown key", id="unknown-key"),
        pytest.param("issuer = 5\n", "issuer: must be a string", id="wrong-type"),
        pytest.param("issuer = \n", "not valid TOML", id="bad-toml"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, text, message):
    monkeypatch.setenv("GATEWAY_CONFIG", "")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code = cli.main(["--config", str(path), "db", "current"])
    err = capsys.readouterr().err
    assert message in one_line_error(code, err)
    assert str(path) in err


def test_missing_config_file_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GATEWAY_CONFIG", "")
    code = cli.main(["--config", str(tmp_path / "nope.toml"), "init"])
    assert "file not found" in one_line_error(code, capsys.readouterr().err)


def test_client_create_logout_uris_and_first_party(gw):
    code, out, _ = gw(
        "client",
        "create",
        "--name",
        "Portal",
        "--public",
        "--first-party",
        "--redirect-uri",
        "https://portal.example/cb",
        "--post-logout-redirect-uri",
        "https://portal.example/bye",
        "--post-logout-redirect-uri",
        "https://portal.example/bye",
        "--json",
    )
    assert code == 0
    client_id = json.loads(out)["client_id"]
    code, out, _ = gw("client", "list", "--json")
    listed = {c["client_id"]: c for c in json.loads(out)}[client_id]
    assert listed["post_logout_redirect_uris"] == ["https://portal.example/bye"]
    assert listed["first_party"] is True
    code, out, _ = gw("client", "list")
    line = next(line for line in out.splitlines() if line.startswith(client_id))
    assert line.endswith("  first-party")


@pytest.mark.parametrize(
    "uri",
    [
        "http://portal.example/bye",
        "/bye",
        "https://portal.example/bye#x",
        "https://",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox",
    ],
)
def test_client_create_refuses_bad_logout_uris(gw, uri):
    code, _, err = gw(
        "client", "create", "--name", "P", "--public", "--redirect-uri",
        "https://portal.example/cb", "--post-logout-redirect-uri", uri,
    )  # fmt: skip
    assert code == 2
    assert err.splitlines()[-1].startswith(f"gateway: redirect URI {uri!r}")


@pytest.mark.parametrize(
    ("issuer", "host", "port", "expected"),
    [
        pytest.param(None, "127.0.0.1", 8000, "http://127.0.0.1:8000", id="defaults"),
        pytest.param(None, "127.0.0.1", 18000, "http://127.0.0.1:18000", id="port-moves-it"),
        pytest.param(None, "localhost", 8000, "http://localhost:8000", id="host-moves-it"),
        pytest.param(None, "0.0.0.0", 18000, "http://127.0.0.1:18000", id="wildcard-keeps-host"),
        pytest.param(None, "::", 18000, "http://127.0.0.1:18000", id="v6-wildcard"),
        pytest.param(None, "::1", 18000, "http://[::1]:18000", id="v6-bracketed"),
        pytest.param(
            "https://login.example", "127.0.0.1", 18000, "https://login.example", id="own-issuer"
        ),
    ],
)
def test_demo_issuer_follows_host_and_port_only_from_the_server_default(
    issuer, host, port, expected
):
    config = Config() if issuer is None else Config(issuer=issuer)
    assert demo_issuer(config, host, port) == expected


ROUTES = """
[[routes]]
name = "orders"
path = "/orders"
upstream = "http://127.0.0.1:9"
audience = "https://api.example.com/orders"
[[routes]]
name = "billing"
path = "/billing"
upstream = "http://127.0.0.1:9"
audience = "https://billing.example.com"
"""


def test_client_create_resource(toml, gw):
    """``--resource`` (repeatable): the only resources the client may ask tokens for."""
    toml.write_text(toml.read_text() + ROUTES)
    code, out, _ = gw(
        "client", "create", "--name", "Agent", "--grant-type", "client_credentials",
        "--resource", "https://api.example.com/orders",
        "--resource", "https://api.example.com/orders", "--json",
    )  # fmt: skip
    assert code == 0
    client_id = json.loads(out)["client_id"]
    code, out, _ = gw("client", "list", "--json")
    listed = {c["client_id"]: c for c in json.loads(out)}
    assert listed[client_id]["resources"] == ["https://api.example.com/orders"]
    code, out, _ = gw("client", "create", "--name", "Any", "--grant-type", "password", "--json")
    assert {c["client_id"]: c for c in json.loads(gw("client", "list", "--json")[1])}[
        json.loads(out)["client_id"]
    ]["resources"] is None  # default: any
    line = next(line for line in gw("client", "list")[1].splitlines() if client_id in line)
    assert line.endswith("  resources='https://api.example.com/orders'")


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("https://elsewhere.example.com", id="unknown"),
        pytest.param("https://billing.example.com/", id="not-exactly"),
        pytest.param("", id="empty"),
    ],
)
def test_client_create_unknown_resource_is_a_clear_error(toml, gw, storage, uri):
    toml.write_text(toml.read_text() + ROUTES)
    code, out, err = gw("client", "create", "--name", "Agent", "--resource", uri)
    message = one_line_error(code, err)
    assert f"--resource {uri!r} is not a resource of this gateway's routes" in message
    assert "(they are: https://api.example.com/orders, https://billing.example.com)" in message
    assert out == ""
    with storage.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Client)) == 0


def test_client_create_resource_without_routes(storage, gw):
    code, _, err = gw("client", "create", "--name", "Agent", "--resource", "https://a.example")
    assert "(no route takes tokens)" in one_line_error(code, err)
