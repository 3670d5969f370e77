"""The load cases, each a ``Case`` whose ``measure()`` is one wrk run: the proxy (GET through a
route), the token endpoint (client_credentials; rotating refresh tokens, chained) and
introspection."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import servers
from benchmarks.load import Case, Run, basic, post_form, wrk
from benchmarks.plan import TOKEN_CONNECTIONS, Plan

#: what the POST cases send: an MCP ``tools/call`` of a tool the bench's token may call, with
#: the headers an MCP client sends (SEP-2243); the same bytes to the mcp and the scoped route
MCP_CALL = (
    '{"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "read_items", '
    '"arguments": {"folder": "/reports/2026", "limit": 20, "fields": ["id", "title", "size"]}}}'
)
MCP_HEADERS = ("Mcp-Method: tools/call", "Mcp-Name: read_items", "Accept: application/json")


def proxy_case(
    plan: Plan,
    name: str,
    url: str,
    pid: int,
    upstream_pid: int,
    token: str | None = None,
    extra: Sequence[str] = (),
    post: str | None = None,
) -> Case:
    """A wrk run through a route: GET, or with ``post`` a POST of that JSON body."""
    headers = [f"Authorization: Bearer {token}"] if token else []
    headers += extra

    def load(seconds: float) -> Run:
        return wrk(
            url,
            seconds=seconds,
            connections=plan.proxy_connections,
            threads=plan.wrk_threads,
            lua="get" if post is None else "json_post",
            args=() if post is None else (post,),
            headers=headers,
            pin=plan.cores.pin(plan.cores.load),
            cpu_of=pid,
            load_of=(upstream_pid,),
        )

    return Case(name, lambda: load(plan.seconds), lambda: load(1))


def form_case(
    plan: Plan, name: str, url: str, pid: int, authorization: str, form: str, expect: str
) -> Case:
    def load(seconds: float) -> Run:
        return wrk(
            url,
            seconds=seconds,
            connections=TOKEN_CONNECTIONS,
            threads=plan.wrk_threads,
            lua="form_post",
            args=[authorization, form, expect],
            pin=plan.cores.pin(plan.cores.load),
            cpu_of=pid,
        )

    return Case(name, lambda: load(plan.seconds), lambda: load(1))


def refresh_case(
    plan: Plan, name: str, base: str, pid: int, deployment: servers.Deployment, folder: Path
) -> Case:
    """Rotating refresh tokens: fresh seeds each run (password grant), one per connection and
    a few spare per wrk thread; every answer's new token is sent next (lua/refresh_chain)."""
    auth = basic(deployment.client_id, deployment.client_secret)
    threads = plan.wrk_threads
    per_thread = TOKEN_CONNECTIONS // threads + 4

    def seed() -> Path:
        form = {
            "grant_type": "password",
            "username": servers.USER_EMAIL,
            "password": servers.USER_PASSWORD,
            "scope": servers.SCOPE,
        }
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: post_form(base + "/oauth/token", form, auth),
                    range(threads * per_thread),
                )
            )
        path = folder / f"{name}-seeds.txt"
        path.write_text("".join(a["refresh_token"] + "\n" for a in answers))
        return path

    def measure() -> Run:
        seeds = seed()
        return wrk(
            base + "/oauth/token",
            seconds=plan.seconds,
            connections=TOKEN_CONNECTIONS,
            threads=threads,
            lua="refresh_chain",
            args=[auth, str(seeds), str(per_thread)],
            pin=plan.cores.pin(plan.cores.load),
            cpu_of=pid,
        )

    return Case(name, measure)


def access_token(base: str, deployment: servers.Deployment) -> str:
    answer = post_form(
        base + "/oauth/token",
        {"grant_type": "client_credentials", "scope": servers.SCOPE},
        basic(deployment.client_id, deployment.client_secret),
    )
    return str(answer["access_token"])


def token_cases(
    plan: Plan, suffix: str, base: str, pid: int, deployment: servers.Deployment, folder: Path
) -> list[Case]:
    cases = []
    auth = basic(deployment.client_id, deployment.client_secret)
    if plan.wants(f"client-credentials-{suffix}"):
        cases.append(
            form_case(
                plan,
                f"client-credentials-{suffix}",
                base + "/oauth/token",
                pid,
                auth,
                "grant_type=client_credentials",
                '"access_token"',
            )
        )
    if plan.wants(f"refresh-token-{suffix}"):
        cases.append(refresh_case(plan, f"refresh-token-{suffix}", base, pid, deployment, folder))
    if plan.wants(f"introspect-{suffix}"):
        introspector = basic(deployment.introspector_id, deployment.introspector_secret)
        token = access_token(base, deployment)
        cases.append(
            form_case(
                plan,
                f"introspect-{suffix}",
                base + "/oauth/introspect",
                pid,
                introspector,
                f"token={token}",
                '"active"%s*:%s*true',
            )
        )
    return cases
