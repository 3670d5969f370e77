"""The ``gateway`` command line's arguments: one parser, every verb and flag (the interface
scripts depend on: add to it, never rename or drop)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from gateway import registration_tokens
from gateway.config import GRANT_TYPES
from gateway.edge import DEFAULT_LISTEN, DEFAULT_UPSTREAM, EDGES
from gateway.issuer.clientauth import CLIENT_AUTH_METHODS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gateway", description="OAuth 2.0 gateway: issuer, validator and proxy.")
    p.add_argument("--config", metavar="PATH", help="TOML config file (default: $GATEWAY_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("init", help="create or upgrade the schema; create a first signing key")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    user = sub.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    uc = user.add_parser("create", help="create a user")
    uc.add_argument("--email", required=True)
    uc.add_argument("--name", help="the user's full name (the OpenID Connect 'name' claim)")
    uc.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    uc.add_argument("--json", action="store_true")
    devices = user.add_parser(
        "devices", help="a user's known-device cookies (they skip the login throttle's delay)"
    ).add_subparsers(dest="devices_action", metavar="{forget}", required=True, parser_class=_Parser)
    udf = devices.add_parser(
        "forget",
        help="every known-device cookie of the user issued until now stops skipping the delay",
    )
    udf.add_argument("--user", metavar="EMAIL", required=True)

    client = sub.add_parser("client", help="manage OAuth clients").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    cc = client.add_parser("create", help="register a client")
    cc.add_argument("--name", required=True)
    cc.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
    cc.add_argument(
        "--grant-type",
        action="append",
        dest="grant_types",
        choices=GRANT_TYPES,
        help="repeatable; default: authorization_code and refresh_token",
    )
    cc.add_argument("--scope", default="", help='space-separated, e.g. "orders:read orders:write"')
    cc.add_argument("--public", action="store_true", help="no secret (auth method 'none')")
    cc.add_argument("--auth-method", choices=CLIENT_AUTH_METHODS)
    cc.add_argument(
        "--introspect", action="store_true", help="a resource server allowed to introspect tokens"
    )
    cc.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        dest="post_logout_redirect_uris",
        help="repeatable; where logout may send the browser back to (exact match)",
    )
    cc.add_argument(
        "--first-party",
        action="store_true",
        help="a client of this deployment itself: its users never see a consent page",
    )
    cc.add_argument(
        "--resource",
        action="append",
        dest="resources",
        metavar="URI",
        help="repeatable; the only protected resources (RFC 8707 identifiers of the routes) it "
        "may ask tokens for; default: any",
    )
    cc.add_argument(
        "--require-dpop",
        action="store_true",
        help="its token requests must carry a DPoP proof (RFC 9449): its tokens are bound to a key",
    )
    cc.add_argument(
        "--require-par",
        action="store_true",
        help="its authorization requests must be pushed to /oauth/par first (RFC 9126)",
    )
    keys = cc.add_mutually_exclusive_group()
    keys.add_argument(
        "--jwks",
        metavar="FILE",
        help="--auth-method private_key_jwt: a JWK Set file of the public keys it signs with",
    )
    keys.add_argument(
        "--jwks-uri",
        metavar="URL",
        help="--auth-method private_key_jwt: the https:// URL where it publishes its JWK Set",
    )
    cc.add_argument("--json", action="store_true")
    cl = client.add_parser("list", help="list clients")
    cl.add_argument("--json", action="store_true")
    cd = client.add_parser("delete", help="delete a client and revoke its grants")
    # ids are base64url and may start with '-': argparse then needs "--" before them
    cd.add_argument(
        "client_id", metavar="ID", help="the client_id (write -- ID if it starts with -)"
    )

    consent = sub.add_parser(
        "consent", help="what users allowed clients (the remembered consent page)"
    ).add_subparsers(dest="action", required=True, parser_class=_Parser)
    col = consent.add_parser("list", help="a user's stored consents")
    col.add_argument("--user", metavar="EMAIL", required=True)
    col.add_argument("--json", action="store_true")
    cor = consent.add_parser(
        "revoke",
        help="forget a user's consent and end the grants (every token) it covered; "
        "exits 0 when there was nothing to revoke",
    )
    cor.add_argument("--user", metavar="EMAIL", required=True)
    cor.add_argument(
        "--client",
        metavar="ID",
        help="only this client_id (write --client=ID if it starts with -); default: every client",
    )

    key = sub.add_parser("key", help="manage signing keys").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    kl = key.add_parser("list", help="list published keys")
    kl.add_argument("--json", action="store_true")
    key.add_parser("rotate", help="publish a new key; it signs after keys.activation_delay")
    kr = key.add_parser("retire", help="unpublish a key: tokens it signed stop validating")
    kr.add_argument("kid", metavar="KID", help="the key's kid (write -- KID if it starts with -)")

    token = sub.add_parser("token", help="manage tokens").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    tr = token.add_parser("revoke", help="revoke one access token, or every token of a user")
    group = tr.add_mutually_exclusive_group(required=True)
    group.add_argument("--jti", help="the access token's jti claim")
    group.add_argument("--user", metavar="EMAIL", help="every token of this user issued until now")

    registration = sub.add_parser(
        "registration", help="dynamic client registration (RFC 7591)"
    ).add_subparsers(dest="action", metavar="{token}", required=True, parser_class=_Parser)
    rtoken = registration.add_parser(
        "token", help='initial access tokens, for [registration] dynamic = "token"'
    ).add_subparsers(dest="token_action", required=True, parser_class=_Parser)
    rtc = rtoken.add_parser("create", help="make a token (shown once) a client registers with")
    rtc.add_argument(
        "--ttl",
        type=int,
        default=registration_tokens.DEFAULT_TTL,
        metavar="SECONDS",
        help=f"how long it lasts (default: {registration_tokens.DEFAULT_TTL})",
    )
    rtc.add_argument(
        "--uses",
        type=int,
        default=registration_tokens.DEFAULT_USES,
        metavar="N",
        help=f"how many registrations it allows (default: {registration_tokens.DEFAULT_USES})",
    )
    rtc.add_argument("--json", action="store_true")
    rtl = rtoken.add_parser("list", help="list tokens: status, uses, expiry (never the token)")
    rtl.add_argument("--json", action="store_true")
    rtr = rtoken.add_parser("revoke", help="a token stops allowing registrations")
    rtr.add_argument("id", metavar="ID", help="the token's id, as 'list' shows it")

    demo = sub.add_parser("demo", help="serve with a demo upstream, user and client")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument("--upstream-port", type=int, default=9001)

    edge = sub.add_parser(
        "edge-config", help="print a configuration for nginx, Caddy, Traefik or Envoy in front"
    )
    edge.add_argument("edge", choices=EDGES)
    edge.add_argument(
        "--upstream",
        metavar="URL",
        help="where the edge sends allowed requests (default: the "
        f"first route's upstream, else {DEFAULT_UPSTREAM})",
    )
    edge.add_argument(
        "--listen", type=int, default=DEFAULT_LISTEN, metavar="PORT", help="the edge's port"
    )
    edge.add_argument(
        "--gateway",
        metavar="URL",
        help="http://host:port where the edge reaches the gateway "
        "(default: [server] host and port)",
    )

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    db.add_parser("current", help="print the schema revision")
    return p
