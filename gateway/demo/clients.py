"""``gateway demo``'s user and its two clients, made on first use and kept beside the keys.

- the user ``DEMO_EMAIL`` / ``DEMO_PASSWORD``, to sign in as;
- a confidential client for the walkthrough's ``curl`` calls (password, refresh token, client
  credentials and code grants, introspection), its secret in ``DEMO_CREDENTIALS``;
- a public client (PKCE) for the browser client's pages on the echo upstream's origin, its
  ``client_id`` in ``DEMO_BROWSER_CLIENT``.

The files hold credentials: they are written beside the signing keys (never in git), and a
client whose file is lost, or whose row is gone, is made anew.
"""

from __future__ import annotations

import json
import os

from gateway import accounts
from gateway.config import Config
from gateway.demo.browser import APP_PATH, CALLBACK_PATH, browser_scope
from gateway.demo.routes import READ_SCOPE
from gateway.storage import Storage

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_NAME = "Demo User"
DEMO_CREDENTIALS = "demo-client.json"
DEMO_BROWSER_CLIENT = "demo-browser-client.json"


def demo_client(config: Config, storage: Storage) -> dict[str, str]:
    """The demo client's credentials, kept beside the keys (never in git); made when missing."""
    path = config.keys_dir / DEMO_CREDENTIALS
    with storage.session() as session:
        if accounts.find_user(session, DEMO_EMAIL) is None:
            accounts.create_user(session, DEMO_EMAIL, DEMO_PASSWORD, DEMO_NAME)
        if path.exists():
            saved: dict[str, str] = json.loads(path.read_text())
            if accounts.find_client(session, saved["client_id"]) is not None:
                return saved
        new = accounts.create_client(
            session,
            "Demo client",
            [f"{config.issuer.rstrip('/')}/demo/public/callback"],
            ["password", "refresh_token", "client_credentials", "authorization_code"],
            "demo:read demo:write",
            "client_secret_basic",
            can_introspect=True,
        )
    saved = {"client_id": new.client.client_id, "client_secret": new.client_secret or ""}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(saved, fh)
    return saved


def browser_client(config: Config, storage: Storage, app_url: str) -> str:
    """The browser client's client_id: a public client (PKCE) whose redirect URI and
    post-logout redirect URI are the demo app's pages on the upstream (``app_url``); kept
    beside the keys, made anew when missing or when the upstream port changed."""
    path = config.keys_dir / DEMO_BROWSER_CLIENT
    redirect_uri = app_url.rstrip("/") + CALLBACK_PATH
    with storage.session() as session:
        if path.exists():
            client_id = str(json.loads(path.read_text())["client_id"])
            saved = accounts.find_client(session, client_id)
            if saved is not None and saved.redirect_uris == [redirect_uri]:
                return client_id
        new = accounts.create_client(
            session,
            "Demo browser app",
            [redirect_uri],
            ["authorization_code", "refresh_token"],
            browser_scope(READ_SCOPE),
            "none",
            post_logout_redirect_uris=[app_url.rstrip("/") + APP_PATH],
        )
        client_id = new.client.client_id
    path.write_text(json.dumps({"client_id": client_id}))
    return client_id
