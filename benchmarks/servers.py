"""The processes a benchmark run starts: the upstream (Debian's nginx, or our own), the
reference passthrough, the upload sink, and gateways set up through the CLI like a user would.

Everything listens on 127.0.0.1 at free ports and lives in the run's temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.load import free_port, running, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
SCOPE = "bench:read"
USER_EMAIL = "bench@example.com"
USER_PASSWORD = "bench-password-not-secret"


# --- tools the run needs ------------------------------------------------------------------


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    print(f"installing {package} from Debian's packages", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> int:
        return subprocess.run(
            ["apt-get", *args], check=False, env=env, capture_output=True
        ).returncode

    if apt("install", "-y", "-qq", package) != 0:
        apt("update", "-qq")
        apt("install", "-y", "-qq", package)


def find_nginx() -> str | None:
    """Debian's nginx, installed (nginx-light) when missing and we are root."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        _apt_install("nginx-light")
        found = shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    return found


def ensure_tool(name: str, package: str) -> bool:
    if shutil.which(name) is None:
        _apt_install(package)
    return shutil.which(name) is not None


def ensure_postgres() -> bool:
    """PostgreSQL on 127.0.0.1:5432, started (or installed) as ``.ci/run`` does."""

    def ready() -> bool:
        return (
            shutil.which("pg_isready") is not None
            and subprocess.run(
                ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False
            ).returncode
            == 0
        )

    if ready():
        return True
    if shutil.which("pg_ctlcluster") is None:
        _apt_install("postgresql")
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return False
    version = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version[-1], "main", "start"],
        check=False,
        capture_output=True,
    )
    for _ in range(30):
        if ready():
            return True
        time.sleep(1)
    return False


# --- upstream ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    url: str
    label: str
    #: the process (tree) whose CPU counts as the load side's
    pid: int


def _nginx_main(name: str) -> str:
    """The head of an nginx.conf whose files in ``{tmp}`` are named after ``name``, up to
    the inside of its http block (a template: ``{tmp}`` stays for ``format``)."""
    return f"""worker_processes 1;
daemon off;
pid {{tmp}}/{name}.pid;
error_log {{tmp}}/{name}-error.log warn;
events {{{{ worker_connections 8192; }}}}
http {{{{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {{tmp}}/{name}-body;
    proxy_temp_path {{tmp}}/{name}-proxy;
    fastcgi_temp_path {{tmp}}/{name}-fastcgi;
    uwsgi_temp_path {{tmp}}/{name}-uwsgi;
    scgi_temp_path {{tmp}}/{name}-scgi;
"""


NGINX_CONF = (
    _nginx_main("nginx")
    + """    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /public/blob {{
            alias {blob};
            default_type application/octet-stream;
        }}
        location / {{
            default_type application/json;
            return 200 '{{"ok":true,"items":[1,2,3]}}';
        }}
    }}
}}
"""
)


@contextlib.contextmanager
def upstream(folder: Path, pin: Sequence[str], blob: Path) -> Iterator[Upstream]:
    """nginx answering a small fixed body (and serving ``blob`` at /public/blob); our own
    asyncio upstream, labelled as such, where nginx cannot be had."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    nginx = find_nginx()
    if nginx is not None:
        # nginx's worker drops root for "nobody": let it read the blob in our private folder
        folder.chmod(0o755)
        blob.chmod(0o644)
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=folder, port=port, blob=blob))
        version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        command = [*pin, nginx, "-p", str(folder), "-e", str(folder / "nginx-error.log")]
        with running([*command, "-c", str(conf)], folder / "nginx.log", "nginx") as process:
            wait_until_up(url + "/", process, "nginx")
            yield Upstream(url, version.replace("nginx version: ", ""), process.pid)
        return
    with sink(folder, pin, port, blob.stat().st_size) as own:
        label = "OUR OWN asyncio upstream (benchmarks/sink.py): nginx unavailable"
        yield Upstream(own.url, label, own.pid)


EDGE_CONF = (
    _nginx_main("edge")
    + """    upstream edge_upstream {{
        server {upstream};
        keepalive 64;
    }}
{snippet}
}}
"""
)


@contextlib.contextmanager
def edge_nginx(
    folder: Path, pin: Sequence[str], deployment: Deployment, gateway_url: str, upstream_url: str
) -> Iterator[tuple[str, int]]:
    """nginx in front of the gateway, configured by ``gateway edge-config nginx`` (its
    upstream kept alive, as a deployment would); yields (its URL, its pid)."""
    nginx = find_nginx()
    if nginx is None:
        raise SystemExit("bench: the edge cases need nginx")
    port = free_port()
    snippet = _cli(
        deployment.config,
        *("edge-config", "nginx", "--gateway", gateway_url, "--listen", str(port)),
        *("--upstream", "http://edge_upstream"),
    )
    snippet = snippet.replace(f"listen {port};", f"listen 127.0.0.1:{port} backlog=4096;")
    snippet = snippet.replace(
        "        proxy_pass http://edge_upstream;",
        "        proxy_pass http://edge_upstream;\n        proxy_http_version 1.1;\n"
        '        proxy_set_header Connection "";',
    )
    conf = folder / "edge.conf"
    upstream = upstream_url.removeprefix("http://")
    conf.write_text(EDGE_CONF.format(tmp=folder, upstream=upstream, snippet=snippet))
    url = f"http://127.0.0.1:{port}"
    command = [*pin, nginx, "-p", str(folder), "-e", str(folder / "edge-error.log")]
    with running([*command, "-c", str(conf)], folder / "edge.log", "edge nginx") as process:
        wait_until_up(url + "/public/", process, "edge nginx")
        yield url, process.pid


@contextlib.contextmanager
def sink(
    folder: Path, pin: Sequence[str], port: int | None = None, blob_bytes: int = 0
) -> Iterator[Upstream]:
    """benchmarks/sink.py: reads each body whole before answering."""
    port = port or free_port()
    command = [*pin, sys.executable, "-m", "benchmarks.sink", "--port", str(port)]
    command += ["--blob-bytes", str(blob_bytes)]
    url = f"http://127.0.0.1:{port}"
    with running(command, folder / f"sink-{port}.log", "the sink", cwd=ROOT) as process:
        wait_until_up(url + "/", process, "the sink")
        yield Upstream(url, "benchmarks/sink.py", process.pid)


@contextlib.contextmanager
def reference(folder: Path, pin: Sequence[str], upstream_url: str) -> Iterator[tuple[str, int]]:
    """The uvicorn + aiohttp passthrough; yields (its URL, its pid)."""
    port = free_port()
    command = [*pin, sys.executable, "-m", "benchmarks.reference_passthrough"]
    command += ["--port", str(port), "--upstream", upstream_url]
    url = f"http://127.0.0.1:{port}"
    with running(command, folder / "reference.log", "the reference", cwd=ROOT) as process:
        wait_until_up(url + "/public/", process, "the reference")
        yield url, process.pid


# --- gateways, set up through the CLI -----------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """One gateway configuration: its database, keys and the clients made for the run."""

    name: str
    config: Path
    client_id: str
    client_secret: str
    introspector_id: str
    introspector_secret: str


def _cli(config: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def deploy(
    folder: Path, name: str, database_url: str, upstream_url: str, sink_url: str
) -> Deployment:
    """A config with a public, a scoped, a DPoP (``dpop = "required"``), an MCP
    (``mcp = true``) and an upload-sink route;
    ``gateway init``; a client (client_credentials, password, refresh_token), an introspecting
    client and a user."""
    home = folder / name
    home.mkdir()
    config = home / "gateway.toml"
    config.write_text(
        f"""issuer = "http://127.0.0.1:8000"
[database]
url = {json.dumps(database_url)}
[keys]
dir = "keys"
[tokens]
access_token_ttl = 3600                  # outlives the run: one token for every round
[metrics]
enabled = true
[[routes]]
name = "public"
path = "/public"
upstream = {json.dumps(upstream_url)}
public = true
[[routes]]
name = "scoped"
path = "/scoped"
upstream = {json.dumps(upstream_url)}
scopes = [{json.dumps(SCOPE)}]
[[routes]]
name = "dpop"
path = "/dpop"
upstream = {json.dumps(upstream_url)}
scopes = [{json.dumps(SCOPE)}]
dpop = "required"
[[routes]]
name = "mcp"
path = "/mcp"
upstream = {json.dumps(upstream_url)}
scopes = [{json.dumps(SCOPE)}]
mcp = true
[routes.mcp_tool_scopes]
"delete_*" = ["bench:admin"]
"write_*" = [["bench:write"], ["bench:admin"]]
"read_*" = [{json.dumps(SCOPE)}]
[[routes]]
name = "sink"
path = "/sink"
upstream = {json.dumps(sink_url)}
public = true
"""
    )
    _cli(config, "init")
    grants = ["client_credentials", "password", "refresh_token"]
    client = json.loads(
        _cli(
            config,
            *("client", "create", "--name", "bench", "--scope", SCOPE, "--json"),
            *(arg for grant in grants for arg in ("--grant-type", grant)),
        )
    )
    introspector = json.loads(
        _cli(
            config,
            *("client", "create", "--name", "resource-server", "--introspect", "--json"),
            *("--grant-type", "client_credentials"),
        )
    )
    _cli(config, "user", "create", "--email", USER_EMAIL, "--password-stdin", stdin=USER_PASSWORD)
    return Deployment(
        name,
        config,
        client["client_id"],
        client["client_secret"],
        introspector["client_id"],
        introspector["client_secret"],
    )


def without_access_log(deployment: Deployment) -> Deployment:
    """The same deployment (database, keys, clients) with ``[logging] format = "off"``."""
    config = deployment.config.with_name("gateway-nolog.toml")
    config.write_text(deployment.config.read_text() + '[logging]\nformat = "off"\n')
    return replace(deployment, name=deployment.name + "-nolog", config=config)


@contextlib.contextmanager
def gateway(
    folder: Path, deployment: Deployment, workers: int, pin: Sequence[str], stock: bool = False
) -> Iterator[tuple[str, int]]:
    """``gateway serve`` on a free port; yields (its URL, the pid of its process tree).
    ``stock``: one worker on uvicorn's stock httptools protocol instead of the gateway's
    (``benchmarks/listener.py``), for the listener's cost."""
    port = free_port()
    if stock:
        command = [*pin, sys.executable, "-m", "benchmarks.listener", "serve"]
        command += ["--config", str(deployment.config), "--port", str(port)]
    else:
        command = [*pin, sys.executable, "-m", "gateway", "--config", str(deployment.config)]
        command += ["serve", "--port", str(port), "--workers", str(workers)]
    url = f"http://127.0.0.1:{port}"
    log = folder / f"gateway-{deployment.name}-{workers}w{'-stock' if stock else ''}.log"
    with running(
        command, log, f"gateway ({deployment.name}, {workers} worker(s))", cwd=ROOT
    ) as process:
        wait_until_up(url + "/readyz", process, f"gateway ({deployment.name})")
        if workers > 1:
            time.sleep(1.0)  # /readyz answered by one worker; let the others finish starting
        yield url, process.pid
