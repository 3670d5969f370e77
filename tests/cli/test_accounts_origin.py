"""``gateway client list`` says how each client came: ``cli``, ``registration`` (RFC 7591) or
``metadata-document``."""

from __future__ import annotations

import json

from gateway import accounts
from gateway.storage import Storage


def test_client_list_shows_each_clients_origin(storage: Storage, gw) -> None:
    with storage.session() as session:
        made = accounts.create_client(
            session, "CLI app", [], ["client_credentials"], "", "client_secret_basic"
        )
        registered = accounts.create_client(
            session, "Agent", [], ["client_credentials"], "", "client_secret_basic",
            origin="registration",
        )  # fmt: skip
    code, out, _ = gw("client", "list", "--json")
    assert code == 0
    origins = {row["client_id"]: row["origin"] for row in json.loads(out)}
    assert origins == {made.client.client_id: "cli", registered.client.client_id: "registration"}
    _, text, _ = gw("client", "list")
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert "  origin=cli" in lines[made.client.client_id]
    assert "  origin=registration" in lines[registered.client.client_id]
